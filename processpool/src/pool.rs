//! The pool: a queue of jobs, and per worker process one *supervisor* greenlet (starts the
//! process, reads its results, replaces it when it dies) and one *feeder* greenlet (sends
//! it jobs, at most [`PIPELINE`] ahead of its results).
//!
//! ```text
//!  apply/map ──► queue ──► feeder ──frames──► worker process (runs tasks in order)
//!                 ▲ ▲                               │
//!    taken back:  │ │ requeued: sent, not started   │ results
//!    not started, │ │                               ▼
//!    for an idle  │ └─────────── supervisor ◄── frames: completes the job's result
//!    worker       └─────────── feeder of an idle worker
//! ```
//!
//! Every job sent to a worker gets the next *seq* of that worker, and is decided once at
//! the worker's gate (`gate.rs`): started by the worker, or taken back by the pool. So
//! when a worker ends, the jobs it held split exactly: the ones it started fail with
//! [`TaskError::WorkerDied`] (a task never runs twice), the others go back to the front
//! of the queue.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use verdant_hub::GreenletRef;
use verdant_hub::park::{self, WaitList};

use crate::error::{MapError, StillRunning, TaskError};
use crate::frame::{self, FrameReader, Kind};
use crate::function::{BinaryIdentity, Call};
use crate::input::{Input, Refused};
use crate::process::{self, Process};
use crate::result::{ApplyResult, Arrivals, ChunkSource, IMap};
use crate::startup::{StartFailure, Startups, Verdict};

/// Jobs a worker may hold at once (the one it runs and the ones queued behind it): enough
/// to keep it busy while its results travel back. A job queued behind a long task does not
/// stay there: an idle worker takes it back (see [`Worker::take_back`]).
const PIPELINE: usize = 2;

/// How many chunks per worker process an `imap` submits ahead of the results its caller
/// has read (see [`ProcessPool::imap`]).
pub const IMAP_WINDOW_PER_PROCESS: usize = 4;

/// The default of [`Builder::frame_timeout`].
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// What to do with a job's outcome: the result bytes (still encoded) or the error.
pub(crate) type Sink = Box<dyn FnOnce(Result<&[u8], TaskError>)>;

/// One task (or chunk) on its way: its encoded frame and where its outcome goes.
struct Job {
    id: u64,
    /// Its seq at the worker it was last sent to (meaningless while queued).
    seq: u64,
    frame: Rc<[u8]>,
    sink: Sink,
}

impl Job {
    fn finish(self, outcome: Result<&[u8], TaskError>) {
        (self.sink)(outcome);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    /// No new jobs; workers finish the queue, then exit.
    Closed,
    /// Workers killed, jobs failed.
    Terminated,
    /// A worker could not start; every job fails with the stored error.
    Broken,
}

/// A worker process with the jobs it holds.
struct Worker {
    process: Process,
    /// Sent, not answered and not taken back, oldest (lowest seq) first.
    in_flight: RefCell<VecDeque<Job>>,
    /// The feeder waits here for room in `in_flight` (each result makes some).
    room: WaitList,
    /// Jobs sent so far: the seq of the last one.
    sent: Cell<u64>,
    /// Jobs taken back from it (they count against `maxtasksperchild` no more).
    taken_back: Cell<u64>,
    /// Why the feeder killed it, if it did.
    fault: RefCell<Option<String>>,
    feeder: RefCell<Option<GreenletRef>>,
}

#[derive(Default)]
struct Slot {
    supervisor: Option<GreenletRef>,
    worker: Option<Rc<Worker>>,
}

/// Everything the pool's greenlets share.
pub(crate) struct Shared {
    identity: BinaryIdentity,
    initializer: Option<(Call, Vec<u8>)>,
    maxtasksperchild: Option<usize>,
    frame_timeout: Duration,
    startups: Startups,
    state: Cell<State>,
    broken: RefCell<Option<TaskError>>,
    queue: RefCell<VecDeque<Job>>,
    /// Feeders wait here while the queue is empty.
    queue_waiters: WaitList,
    next_id: Cell<u64>,
    slots: RefCell<Vec<Slot>>,
    /// `imap` inputs still open: a closed pool keeps its workers for their chunks.
    open_inputs: Cell<usize>,
}

/// Configures a [`ProcessPool`]: processing's `Pool(processes, initializer, initargs,
/// maxtasksperchild)`.
#[derive(Debug, Default)]
pub struct Builder {
    processes: Option<usize>,
    initializer: Option<Result<(Call, Vec<u8>), TaskError>>,
    maxtasksperchild: Option<usize>,
    frame_timeout: Option<Duration>,
}

impl Builder {
    /// Refuses the settings multiprocessing refuses (`ValueError` there), and a zero
    /// frame bound.
    fn check(&self) -> io::Result<()> {
        let invalid = |what: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, what));
        if self.processes == Some(0) {
            return invalid("the number of processes must be at least 1");
        }
        if self.maxtasksperchild == Some(0) {
            return invalid("maxtasksperchild must be at least 1 (or not set: no limit)");
        }
        if self.frame_timeout.is_some_and(|bound| bound.is_zero()) {
            return invalid("the process pool's frame_timeout must be longer than zero");
        }
        Ok(())
    }

    /// How many worker processes (default: the number of CPUs). Zero is an error at
    /// [`build`](Self::build), as in multiprocessing.
    pub fn processes(mut self, processes: usize) -> Builder {
        self.processes = Some(processes);
        self
    }

    /// `initializer(argument)` runs once in each worker before its first task (to set up
    /// per-process state). If it panics, the pool is broken: every task fails with
    /// [`TaskError::PoolBroken`] naming the panic.
    pub fn initializer<A>(mut self, initializer: fn(A), argument: A) -> Builder
    where
        A: Serialize + DeserializeOwned,
    {
        let encoded = postcard::to_allocvec(&argument).map_err(|e| {
            let why = crate::probe::failure_message(&argument, e);
            TaskError::Serialization(format!("could not encode the initializer's argument: {why}"))
        });
        self.initializer = Some(Call::single(initializer).and_then(|call| Ok((call, encoded?))));
        self
    }

    /// Replaces each worker by a fresh process after it ran `tasks` tasks (frees what
    /// leaky code held). Zero is an error at [`build`](Self::build), as in
    /// multiprocessing (no limit is the default: do not call this).
    pub fn maxtasksperchild(mut self, tasks: usize) -> Builder {
        self.maxtasksperchild = Some(tasks);
        self
    }

    /// How long one frame between the pool and a worker may take (default
    /// [`DEFAULT_FRAME_TIMEOUT`], 30 s). A result whose last byte does not come within it
    /// of its first, or a worker that takes no byte of its tasks for this long while it
    /// runs none, is a failed worker: it is killed and replaced (the task it ran fails
    /// with [`TaskError::WorkerDied`]). Tasks themselves have no time limit.
    pub fn frame_timeout(mut self, bound: Duration) -> Builder {
        self.frame_timeout = Some(bound);
        self
    }

    /// Starts the worker processes (their handshakes finish in the background).
    ///
    /// # Errors
    ///
    /// If this process was itself started as a worker but `main` did not call
    /// [`worker_main`](crate::worker_main) first; if the initializer's argument cannot be
    /// serialized; if `processes`, `maxtasksperchild` or the frame timeout is zero
    /// (`InvalidInput`); if a process cannot be started (then the workers already started
    /// are killed and reaped).
    pub fn build(self) -> io::Result<ProcessPool> {
        if std::env::var_os(crate::worker::WORKER_ENV).is_some() {
            return Err(io::Error::other(
                "this process was started as a process-pool worker, but main() did not call \
                 verdant::processpool::worker_main() first",
            ));
        }
        self.check()?;
        let frame_timeout = self.frame_timeout.unwrap_or(DEFAULT_FRAME_TIMEOUT);
        let initializer = self.initializer.transpose().map_err(io::Error::other)?;
        let processes = self.processes.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let shared = Rc::new(Shared {
            identity: BinaryIdentity::of_this_process()?,
            initializer,
            maxtasksperchild: self.maxtasksperchild,
            frame_timeout,
            startups: Startups::default(),
            state: Cell::new(State::Running),
            broken: RefCell::new(None),
            queue: RefCell::new(VecDeque::new()),
            queue_waiters: WaitList::new(),
            next_id: Cell::new(1),
            slots: RefCell::new((0..processes).map(|_| Slot::default()).collect()),
            open_inputs: Cell::new(0),
        });
        let pool = ProcessPool { shared };
        for slot in 0..processes {
            // On an error, dropping `pool` kills and reaps the workers already started
            // (multiprocessing does the same since bpo-19675).
            let process = process::launch(frame_timeout).map_err(|err| {
                let n = slot + 1;
                io::Error::new(
                    err.kind(),
                    format!("could not start worker {n} of {processes}: {err}"),
                )
            })?;
            let worker = Rc::new(Worker::new(process));
            pool.shared.slots.borrow_mut()[slot].worker = Some(worker.clone());
            let supervisor = verdant_hub::spawn({
                let shared = pool.shared.clone();
                move || supervise(&shared, slot, Some(worker))
            });
            pool.shared.slots.borrow_mut()[slot].supervisor = Some(supervisor.as_ref());
        }
        Ok(pool)
    }
}

/// A pool of worker processes: the `processing.Pool` API (Python's
/// `multiprocessing.Pool`). Tasks are plain functions `fn(A) -> R` whose argument and
/// result are serde-serializable; they run in other processes, so a crash, a leak or
/// non-thread-safe code stays there. Waiting for a result blocks only the calling
/// greenlet.
///
/// Programs that use it call [`worker_main`](crate::worker_main) first thing in `main`.
///
/// ```no_run
/// use std::time::Duration;
/// use verdant_processpool::ProcessPool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() {
///     verdant_processpool::worker_main();
///
///     let pool = ProcessPool::new(Some(4)).unwrap(); // 4 worker processes
///     let result = pool.apply_async(square, 10); // square(10) in a worker
///     assert_eq!(result.get(Some(Duration::from_secs(30))), Ok(100));
///     assert_eq!(pool.map(square, 0..10, None).unwrap(), [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
///     let mut squares = pool.imap(square, 0..10, 1);
///     assert_eq!(squares.next(), Some(Ok(0)));
///     assert_eq!(squares.next_timeout(Duration::from_secs(30)), Ok(Some(Ok(1))));
/// }
/// ```
///
/// `!Send`: a pool is used from the thread (the hub) that made it, as processing says
/// ("tasks can only be submitted by the process which created the pool").
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>() {}
/// assert_send::<verdant_processpool::ProcessPool>();
/// ```
pub struct ProcessPool {
    shared: Rc<Shared>,
}

impl ProcessPool {
    /// A pool of `processes` workers (`None`: the number of CPUs).
    pub fn new(processes: Option<usize>) -> io::Result<ProcessPool> {
        let builder = ProcessPool::builder();
        match processes {
            Some(n) => builder.processes(n),
            None => builder,
        }
        .build()
    }

    /// A pool with an initializer or `maxtasksperchild`.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// How many worker processes the pool keeps.
    pub fn processes(&self) -> usize {
        self.shared.slots.borrow().len()
    }

    /// The process ids of the workers running now (replaced workers get new ones).
    pub fn pids(&self) -> Vec<u32> {
        let slots = self.shared.slots.borrow();
        slots.iter().filter_map(|s| s.worker.as_ref().map(|w| w.process.pid())).collect()
    }

    /// Runs `f(argument)` in a worker and returns its value; only the calling greenlet
    /// waits.
    pub fn apply<A, R>(&self, f: fn(A) -> R, argument: A) -> Result<R, TaskError>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async(f, argument).outcome()
    }

    /// Starts `f(argument)` in a worker and returns at once.
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, argument: A) -> ApplyResult<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async_with(f, argument, |_| {}, |_| {})
    }

    /// Like [`apply_async`](Self::apply_async); when the task ends, `callback` gets the
    /// value or `error_callback` the error: exactly one of them, once, before the result
    /// is ready. They run on this thread's hub (a panic in one is printed and ignored).
    pub fn apply_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        argument: A,
        callback: impl FnOnce(&R) + 'static,
        error_callback: impl FnOnce(&TaskError) + 'static,
    ) -> ApplyResult<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let result = ApplyResult::new();
        let sink = {
            let result = result.clone();
            move |outcome: Result<&[u8], TaskError>| {
                let outcome = outcome.and_then(decode::<R>);
                run_callback(|| match &outcome {
                    Ok(value) => callback(value),
                    Err(error) => error_callback(error),
                });
                result.complete(outcome);
            }
        };
        match Call::single(f).and_then(|call| encode(call, &argument)) {
            Ok(task) => self.submit(vec![task], vec![Box::new(sink)]),
            Err(error) => sink(Err(error)),
        }
        result
    }

    /// `f` applied to every item in worker processes; the values in input order. The
    /// items are sent in chunks of `chunksize` (`None`: about four chunks per worker).
    ///
    /// Does not fail fast: when a chunk fails, the others still run, and the error comes
    /// once every chunk has finished — the first failed chunk by position, whole.
    pub fn map<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>, MapError>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_async(f, items, chunksize).outcome()
    }

    /// Like [`map`](Self::map), returning at once.
    pub fn map_async<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: Option<usize>,
    ) -> ApplyResult<Vec<R>, MapError>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_async_with(f, items, chunksize, |_| {}, |_| {})
    }

    /// Like [`map_async`](Self::map_async), with a callback for the values and one for the
    /// error (exactly one runs, once, before the result is ready).
    pub fn map_async_with<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: Option<usize>,
        callback: impl FnOnce(&Vec<R>) + 'static,
        error_callback: impl FnOnce(&MapError) + 'static,
    ) -> ApplyResult<Vec<R>, MapError>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let items: Vec<A> = items.into_iter().collect();
        let chunksize = chunksize.unwrap_or_else(|| items.len().div_ceil(4 * self.processes()));
        let chunks = chunk_ranges(items.len(), chunksize.max(1));
        let result = ApplyResult::new();
        let collector = Rc::new(MapCollector {
            values: RefCell::new((0..chunks.len()).map(|_| None).collect()),
            first_error: RefCell::new(None),
            remaining: Cell::new(chunks.len()),
            finish: RefCell::new(Some(Box::new({
                let result = result.clone();
                move |outcome: Result<Vec<R>, MapError>| {
                    run_callback(|| match &outcome {
                        Ok(values) => callback(values),
                        Err(error) => error_callback(error),
                    });
                    result.complete(outcome);
                }
            }))),
        });
        if chunks.is_empty() {
            collector.finish_if_done();
            return result;
        }
        self.submit_chunks(f, &items, chunks, move |index, range, outcome| {
            collector.chunk_done(index, range, outcome);
        });
        result
    }

    /// `f` over the items, as an iterator of results in input order, each available as
    /// soon as its chunk is back (`chunksize` items per task; 1 is processing's default).
    ///
    /// The input is read lazily, with backpressure: at most [`IMAP_WINDOW_PER_PROCESS`]
    /// × `processes` chunks are submitted ahead of the results the caller has read (so an
    /// endless iterator is fine). The first ones are read before this returns, the others
    /// as the caller reads. If the input panics, the caller gets the results of the items
    /// before it, then [`TaskError::InputPanicked`], and the iteration ends.
    ///
    /// A [`close`](Self::close) lets an `imap` started before it run to its end; `join`
    /// then also waits until its results are read or it is dropped.
    pub fn imap<A, R, I>(&self, f: fn(A) -> R, items: I, chunksize: usize) -> IMap<R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.imap_inner(f, items, chunksize, true)
    }

    /// Like [`imap`](Self::imap), yielding results in the order they come back. An input
    /// panic comes last, after the results of every item before it.
    pub fn imap_unordered<A, R, I>(&self, f: fn(A) -> R, items: I, chunksize: usize) -> IMap<R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.imap_inner(f, items, chunksize, false)
    }

    fn imap_inner<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
        ordered: bool,
    ) -> IMap<R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let arrivals = Arrivals::new(ordered);
        let input: Box<dyn ChunkSource> = match self.shared.state.get() {
            // Refused at once, as processing's `imap` raises on a closed pool.
            State::Closed => Box::new(Refused(TaskError::NotRunning)),
            _ => {
                let items = items.into_iter();
                Box::new(Input::open(self.shared.clone(), f, items, chunksize, arrivals.clone()))
            }
        };
        let window = IMAP_WINDOW_PER_PROCESS * self.processes();
        IMap::new(arrivals, input, window)
    }

    /// Submits `f` over each chunk of `items`; `done(chunk number, its items, outcome)`
    /// runs as each chunk finishes (or at once for a chunk that cannot be encoded).
    fn submit_chunks<A, R>(
        &self,
        f: fn(A) -> R,
        items: &[A],
        chunks: Vec<std::ops::Range<usize>>,
        done: impl Fn(usize, std::ops::Range<usize>, Result<Vec<R>, TaskError>) + 'static,
    ) where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let call = Call::chunk(f);
        let done = Rc::new(done);
        let mut tasks = Vec::with_capacity(chunks.len());
        let mut sinks: Vec<Sink> = Vec::with_capacity(chunks.len());
        for (index, range) in chunks.into_iter().enumerate() {
            let encoded = call.clone().and_then(|call| encode(call, &items[range.clone()]));
            let done = done.clone();
            let sink = move |outcome: Result<&[u8], TaskError>| {
                done(index, range, outcome.and_then(decode::<Vec<R>>));
            };
            match encoded {
                Ok(task) => {
                    tasks.push(task);
                    sinks.push(Box::new(sink));
                }
                Err(error) => sink(Err(error)),
            }
        }
        self.submit(tasks, sinks);
    }

    /// Takes no more tasks; the workers finish the queued ones, then exit.
    pub fn close(&self) {
        if self.shared.state.get() == State::Running {
            self.shared.state.set(State::Closed);
            self.shared.queue_waiters.notify_all();
        }
    }

    /// Kills the workers at once (SIGKILL, then reaped: no process is left behind);
    /// queued and running tasks fail with [`TaskError::Terminated`]. Dropping the pool
    /// does this too.
    pub fn terminate(&self) {
        let shared = &self.shared;
        if shared.state.get() == State::Terminated {
            return;
        }
        shared.state.set(State::Terminated);
        let me = verdant_hub::current();
        let mut unfinished: Vec<Job> = shared.queue.borrow_mut().drain(..).collect();
        let slots: Vec<(Option<GreenletRef>, Option<Rc<Worker>>)> = (shared.slots.borrow().iter())
            .map(|s| (s.supervisor.clone(), s.worker.clone()))
            .collect();
        for (supervisor, worker) in slots {
            let feeder = worker.as_ref().and_then(|w| w.feeder.borrow().clone());
            for greenlet in [supervisor, feeder].into_iter().flatten() {
                if greenlet != me {
                    greenlet.kill_nowait(); // they unwind when they next run
                }
            }
            if let Some(worker) = worker {
                worker.process.kill_now();
                unfinished.extend(worker.in_flight.borrow_mut().drain(..));
            }
        }
        for slot in shared.slots.borrow_mut().iter_mut() {
            slot.worker = None;
        }
        for job in unfinished {
            job.finish(Err(TaskError::Terminated));
        }
    }

    /// Waits until every worker has exited: after [`close`](Self::close), once the queue is
    /// done; after [`terminate`](Self::terminate), at once. An error on a running pool.
    pub fn join(&self) -> Result<(), StillRunning> {
        if self.shared.state.get() == State::Running {
            return Err(StillRunning);
        }
        let supervisors: Vec<GreenletRef> =
            self.shared.slots.borrow().iter().filter_map(|s| s.supervisor.clone()).collect();
        for supervisor in supervisors {
            supervisor.join();
        }
        Ok(())
    }

    /// Queues encoded tasks with their sinks (or fails them if the pool takes no tasks).
    fn submit(&self, tasks: Vec<Vec<u8>>, sinks: Vec<Sink>) {
        let shared = &self.shared;
        let refusal = match shared.state.get() {
            State::Running => None,
            State::Closed | State::Terminated => Some(TaskError::NotRunning),
            State::Broken => shared.broken.borrow().clone(),
        };
        if let Some(error) = refusal {
            sinks.into_iter().for_each(|sink| sink(Err(error.clone())));
            return;
        }
        for (task, sink) in tasks.into_iter().zip(sinks) {
            shared.enqueue(task, sink);
        }
    }
}

impl Drop for ProcessPool {
    fn drop(&mut self) {
        self.terminate();
    }
}

impl fmt::Debug for ProcessPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessPool")
            .field("state", &self.shared.state.get())
            .field("processes", &self.processes())
            .field("queued", &self.shared.queue.borrow().len())
            .field("pids", &self.pids())
            .finish()
    }
}

/// A task frame (id filled in at submission) for `call` on `argument`.
pub(crate) fn encode<T: Serialize + ?Sized>(
    call: Call,
    argument: &T,
) -> Result<Vec<u8>, TaskError> {
    let argument = postcard::to_allocvec(argument).map_err(|e| {
        let why = crate::probe::failure_message(argument, e);
        TaskError::Serialization(format!("could not encode the argument: {why}"))
    })?;
    Ok(frame::task(0, call, &argument))
}

pub(crate) fn decode<R: DeserializeOwned>(bytes: &[u8]) -> Result<R, TaskError> {
    postcard::from_bytes(bytes).map_err(|e| {
        let what = std::any::type_name::<R>();
        TaskError::Serialization(format!("could not decode the result (a {what}): {e}"))
    })
}

/// `len` items cut into ranges of `chunksize`.
fn chunk_ranges(len: usize, chunksize: usize) -> Vec<std::ops::Range<usize>> {
    (0..len).step_by(chunksize).map(|start| start..(start + chunksize).min(len)).collect()
}

/// Runs a user callback; a panic in it is printed, not propagated into the pool's
/// greenlets.
fn run_callback(callback: impl FnOnce()) {
    if let Err(payload) = verdant_hub::catch_panic(callback) {
        let error = verdant_hub::GreenletError::from_unwind(payload);
        verdant_hub::report::report(format!("verdant: a process-pool callback {error}"));
    }
}

/// Gathers a map's chunks; completes the map's result when the last one is in.
struct MapCollector<R> {
    values: RefCell<Vec<Option<Vec<R>>>>,
    first_error: RefCell<Option<MapError>>,
    remaining: Cell<usize>,
    #[allow(clippy::type_complexity)]
    finish: RefCell<Option<Box<dyn FnOnce(Result<Vec<R>, MapError>)>>>,
}

impl<R> MapCollector<R> {
    fn chunk_done(
        &self,
        index: usize,
        items: std::ops::Range<usize>,
        outcome: Result<Vec<R>, TaskError>,
    ) {
        match outcome {
            Ok(values) => self.values.borrow_mut()[index] = Some(values),
            Err(error) => {
                let mut first = self.first_error.borrow_mut();
                if first.as_ref().is_none_or(|e| items.start < e.items.start) {
                    *first = Some(MapError { items, error });
                }
            }
        }
        self.remaining.set(self.remaining.get() - 1);
        self.finish_if_done();
    }

    fn finish_if_done(&self) {
        if self.remaining.get() > 0 {
            return;
        }
        let Some(finish) = self.finish.borrow_mut().take() else { return };
        let outcome = match self.first_error.borrow_mut().take() {
            Some(error) => Err(error),
            None => Ok(self.values.borrow_mut().drain(..).flatten().flatten().collect()),
        };
        finish(outcome);
    }
}

impl Worker {
    fn new(process: Process) -> Worker {
        Worker {
            process,
            in_flight: RefCell::new(VecDeque::new()),
            room: WaitList::new(),
            sent: Cell::new(0),
            taken_back: Cell::new(0),
            fault: RefCell::new(None),
            feeder: RefCell::new(None),
        }
    }

    /// Whether it runs a task now: one it started (at its gate) and has not answered.
    fn busy(&self) -> bool {
        let oldest = self.in_flight.borrow().front().map(|job| job.seq);
        oldest.is_some_and(|seq| seq <= self.process.gate.decided())
    }

    /// Takes back the next job it has not started, if it holds another one besides (which
    /// keeps it busy). The job is decided at the gate for the pool: the worker skips it.
    fn take_back(&self) -> Option<Job> {
        let mut in_flight = self.in_flight.borrow_mut();
        while in_flight.len() >= 2 {
            let next = self.process.gate.decided() + 1;
            let index = in_flight.iter().position(|job| job.seq == next)?;
            if self.process.gate.try_decide(next) {
                self.taken_back.set(self.taken_back.get() + 1);
                return in_flight.remove(index);
            }
            // The worker started it meanwhile; look at the next one.
        }
        None
    }

    /// Writes `frames` to it; false if it is gone, or stopped reading (then it is killed,
    /// and `fault` says why).
    fn send(&self, frames: &[u8]) -> bool {
        match self.process.write_all(frames, || self.busy()) {
            Ok(()) => true,
            Err(err) => {
                if err.kind() == io::ErrorKind::TimedOut {
                    *self.fault.borrow_mut() = Some(err.to_string());
                    self.process.kill_now();
                }
                false
            }
        }
    }

    /// How many more jobs it may be sent under `maxtasksperchild`.
    fn allowance(&self, maxtasksperchild: Option<usize>) -> usize {
        let given = (self.sent.get() - self.taken_back.get()) as usize;
        maxtasksperchild.map_or(usize::MAX, |max| max.saturating_sub(given))
    }

    /// Makes sure the process is gone and says how it ended, given what `collect` saw.
    fn end(&self, ended: Result<(), String>) -> String {
        let pid = self.process.pid();
        if let Some(fault) = self.fault.borrow_mut().take() {
            return format!("worker process {pid} {fault}, and was killed"); // by its feeder
        }
        match ended {
            Ok(()) => format!("worker process {pid} {}", process::describe(self.process.reap())),
            Err(what) => {
                self.process.kill_now();
                format!("worker process {pid} {what}, and was killed")
            }
        }
    }
}

impl Shared {
    /// Queues an encoded task (its id filled in now) with its sink.
    pub(crate) fn enqueue(&self, mut task: Vec<u8>, sink: Sink) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        task[5..13].copy_from_slice(&id.to_le_bytes()); // the frame's id field
        self.queue.borrow_mut().push_back(Job { id, seq: 0, frame: task.into(), sink });
        self.queue_waiters.notify_all();
    }

    /// An `imap` input opened: until it closes, a closed pool keeps its workers.
    pub(crate) fn input_opened(&self) {
        self.open_inputs.set(self.open_inputs.get() + 1);
    }

    /// An `imap` input closed (ended, or its iterator dropped): the workers of a closed
    /// pool may quit once the queue is done.
    pub(crate) fn input_closed(&self) {
        self.open_inputs.set(self.open_inputs.get() - 1);
        self.queue_waiters.notify_all();
    }

    /// Why an open input's next chunk is refused: the pool was terminated or broke (a
    /// closed pool still takes the chunks of inputs opened before).
    pub(crate) fn refusal_of_open_input(&self) -> Option<TaskError> {
        match self.state.get() {
            State::Running | State::Closed => None,
            State::Terminated => Some(TaskError::Terminated),
            State::Broken => self.broken.borrow().clone(),
        }
    }

    /// Whether a slot should (re)start a worker.
    fn wants_workers(&self) -> bool {
        match self.state.get() {
            State::Running => true,
            State::Closed => !self.queue.borrow().is_empty() || self.open_inputs.get() > 0,
            State::Terminated | State::Broken => false,
        }
    }

    /// How many jobs `worker`'s feeder may send now. An idle worker takes one; a busy one
    /// takes more (up to [`PIPELINE`]) only while no other worker is idle, so that jobs
    /// spread over the workers before they queue up behind one.
    fn room_for(&self, worker: &Worker) -> usize {
        let held = worker.in_flight.borrow().len();
        if held == 0 {
            return 1;
        }
        // A worker still starting counts as idle: it will take a job in a moment.
        let others_idle = self
            .slots
            .borrow()
            .iter()
            .filter_map(|s| s.worker.as_ref())
            .any(|w| !std::ptr::eq(&**w, worker) && w.in_flight.borrow().is_empty());
        if others_idle { 0 } else { PIPELINE - held.min(PIPELINE) }
    }

    /// Moves up to `room` jobs from the queue to `worker`, their frames into `batch`.
    fn dispatch(&self, worker: &Worker, room: usize, batch: &mut Vec<u8>) {
        let mut queue = self.queue.borrow_mut();
        let mut in_flight = worker.in_flight.borrow_mut();
        let take = room.min(queue.len());
        for mut job in queue.drain(..take) {
            job.seq = worker.sent.get() + 1;
            worker.sent.set(job.seq);
            batch.extend_from_slice(&job.frame);
            in_flight.push_back(job);
        }
        if take > 0 && !queue.is_empty() {
            self.queue_waiters.notify_all(); // others may now pipeline the rest
        }
    }

    /// Whether `worker`'s feeder, just after a result came, may have something to do: send
    /// into the room the result made in a full pipeline; or, with the worker now idle,
    /// take a queued job, or take one back from another worker. (Waking it after every
    /// result would cost each `apply` a switch to the feeder for nothing.)
    fn feeder_can_act(&self, worker: &Worker) -> bool {
        let held = worker.in_flight.borrow().len();
        if held + 1 >= PIPELINE {
            return true;
        }
        held == 0
            && (!self.queue.borrow().is_empty()
                || (self.slots.borrow().iter().filter_map(|s| s.worker.as_ref()))
                    .any(|other| other.in_flight.borrow().len() >= 2))
    }

    /// For `idle`, which holds no job while the queue is empty: moves a job that another
    /// worker holds but has not started (queued behind its running task) to the front of
    /// the queue. Whether there was one.
    fn take_back_for(&self, idle: &Worker) -> bool {
        let slots = self.slots.borrow();
        let others = slots.iter().filter_map(|s| s.worker.as_deref());
        for other in others.filter(|other| !std::ptr::eq(*other, idle)) {
            if let Some(job) = other.take_back() {
                self.queue.borrow_mut().push_front(job);
                other.room.notify_one();
                return true;
            }
        }
        false
    }

    /// Start-ups failed (as `startup.rs` decides): fail everything queued, refuse new
    /// work, and kill (and reap) the workers that hold no task, which will never get one:
    /// at the pool's first start, that is every worker already started.
    fn break_pool(&self, why: String) {
        if matches!(self.state.get(), State::Terminated | State::Broken) {
            return;
        }
        let error = TaskError::PoolBroken(why);
        *self.broken.borrow_mut() = Some(error.clone());
        self.state.set(State::Broken);
        let queued: Vec<Job> = self.queue.borrow_mut().drain(..).collect();
        self.queue_waiters.notify_all();
        for job in queued {
            job.finish(Err(error.clone()));
        }
        self.kill_idle_workers();
    }

    /// SIGKILLs and reaps every worker that holds no job; their supervisors see the end
    /// of their streams and finish.
    fn kill_idle_workers(&self) {
        let workers: Vec<Rc<Worker>> =
            self.slots.borrow().iter().filter_map(|s| s.worker.clone()).collect();
        for worker in workers.iter().filter(|w| w.in_flight.borrow().is_empty()) {
            worker.process.kill_now();
        }
    }

    /// A worker ended, and its process is gone (so its gate no longer changes): the jobs
    /// it started and did not answer fail with `how`; the ones it never started go back to
    /// the front of the queue, in their order (or fail, if no worker will take them).
    fn retire(&self, worker: &Worker, how: String) {
        let decided = worker.process.gate.decided();
        let held: Vec<Job> = worker.in_flight.borrow_mut().drain(..).collect();
        let (started, unstarted): (Vec<Job>, Vec<Job>) =
            held.into_iter().partition(|job| job.seq <= decided);
        let refusal = match self.state.get() {
            State::Running | State::Closed => None,
            State::Terminated => Some(TaskError::Terminated),
            State::Broken => self.broken.borrow().clone(),
        };
        match refusal {
            None => {
                let mut queue = self.queue.borrow_mut();
                for job in unstarted.into_iter().rev() {
                    queue.push_front(job);
                }
                drop(queue);
                self.queue_waiters.notify_all();
            }
            Some(error) => unstarted.into_iter().for_each(|job| job.finish(Err(error.clone()))),
        }
        for job in started {
            job.finish(Err(TaskError::WorkerDied(how.clone())));
        }
    }
}

/// A slot's supervisor: keeps one worker process alive while the pool wants one.
/// `launched` is the slot's first process, started by [`Builder::build`].
fn supervise(shared: &Rc<Shared>, slot: usize, mut launched: Option<Rc<Worker>>) {
    while shared.wants_workers() {
        let mut reader = FrameReader::new();
        let worker = match start(shared, slot, launched.take(), &mut reader) {
            Ok(worker) => worker,
            Err(failure) => match shared.startups.failed(failure) {
                Verdict::RetryAfter(pause) => {
                    verdant_hub::sleep(pause);
                    continue;
                }
                Verdict::Break(why) => return shared.break_pool(why),
            },
        };
        shared.startups.succeeded();
        let feeder = verdant_hub::spawn({
            let (shared, worker) = (shared.clone(), worker.clone());
            move || feed(&shared, &worker)
        });
        *worker.feeder.borrow_mut() = Some(feeder.as_ref());
        let ended = collect(shared, &worker, &mut reader);
        feeder.kill_nowait();
        let how = worker.end(ended);
        shared.slots.borrow_mut()[slot].worker = None;
        shared.retire(&worker, how);
    }
}

/// Brings up the worker of `slot` (`launched`, or a new process) through its handshake.
/// On failure the process is gone and the slot empty.
fn start(
    shared: &Shared,
    slot: usize,
    launched: Option<Rc<Worker>>,
    reader: &mut FrameReader,
) -> Result<Rc<Worker>, StartFailure> {
    let worker = match launched {
        Some(worker) => worker,
        None => {
            let process = process::launch(shared.frame_timeout).map_err(|err| {
                StartFailure::other(format!("could not start a worker process: {err}"))
            })?;
            let worker = Rc::new(Worker::new(process));
            shared.slots.borrow_mut()[slot].worker = Some(worker.clone());
            worker
        }
    };
    let initializer = shared.initializer.as_ref().map(|(call, arg)| (*call, &arg[..]));
    if let Err(failure) = worker.process.handshake(reader, shared.identity, initializer) {
        worker.process.kill_now();
        shared.slots.borrow_mut()[slot].worker = None;
        return Err(failure);
    }
    Ok(worker)
}

/// A worker's feeder: sends it queued jobs while it has room (taking one back from
/// another worker when it is idle and the queue empty), then `Quit` when the pool is
/// closed and the queue is empty, or when it served `maxtasksperchild`. Kills the worker
/// if it stops reading.
fn feed(shared: &Shared, worker: &Worker) {
    let mut batch = Vec::new();
    loop {
        let has_room = || worker.in_flight.borrow().len() < PIPELINE;
        worker.room.wait_until(&"room in a process-pool worker's pipeline", None, has_room);
        if worker.in_flight.borrow().is_empty() && shared.queue.borrow().is_empty() {
            shared.take_back_for(worker);
        }
        let allowance = worker.allowance(shared.maxtasksperchild);
        batch.clear();
        shared.dispatch(worker, shared.room_for(worker).min(allowance), &mut batch);
        if batch.is_empty() {
            let queue_empty = shared.queue.borrow().is_empty();
            let closed_and_done = queue_empty && !shared.wants_workers();
            if allowance == 0 || closed_and_done {
                frame::encode(&mut batch, Kind::Quit, 0, &[]);
                worker.send(&batch);
                return;
            }
            // A new job, or a result (which may leave this worker idle), wakes it.
            let waker = park::waker();
            shared.queue_waiters.push(waker.clone());
            worker.room.push(waker);
            park::park(&"a process-pool task to send");
            continue;
        }
        if !worker.send(&batch) {
            return; // its supervisor sees the end of its stream
        }
    }
}

/// A worker's supervisor, reading: completes jobs in order until the stream ends
/// (`Ok`) or breaks (`Err`, what the worker did, to follow "worker process N ").
fn collect(shared: &Shared, worker: &Worker, reader: &mut FrameReader) -> Result<(), String> {
    loop {
        let frame = match worker.process.read_frame(reader, None) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::TimedOut => return Err(err.to_string()),
            Err(err) => return Err(format!("sent an unreadable frame ({err})")),
        };
        let outcome = match frame.kind {
            Kind::Done => Ok(reader.payload(&frame)),
            Kind::Failed => {
                let (kind, message) = frame::parse_failure(reader.payload(&frame));
                Err(kind.into_error(message))
            }
            other => return Err(format!("sent an unexpected {other:?} frame")),
        };
        let job = worker.in_flight.borrow_mut().pop_front();
        match job {
            Some(job) if job.id == frame.id => {
                if shared.feeder_can_act(worker) {
                    worker.room.notify_one();
                }
                job.finish(outcome);
            }
            Some(job) => {
                worker.in_flight.borrow_mut().push_front(job);
                return Err(format!("sent a result for task {} it was not running", frame.id));
            }
            None => return Err(format!("sent a result for task {} it was not given", frame.id)),
        }
    }
}
