//! `ThreadPool`: native worker threads fed from a crossbeam injector queue.
//!
//! ```text
//!   greenlet (hub A)         injector queue          worker threads (≤ maxsize)
//!   pool.spawn(f) ────────▶ [job][job][job] ──steal──▶ run f, store the outcome in its
//!      │                                                slot, wake whoever waits:
//!   result.get(): park  ◀──── hub A's inbox ◀────────── RemoteWaker::wake (coalesced)
//! ```
//!
//! Workers start lazily, one per submitted job while none is idle, up to `maxsize`. An idle
//! worker spins briefly for the next job (waking a parked thread costs tens of
//! microseconds on a VM), then parks on a condvar; lowering `maxsize` retires workers as
//! they become idle. `set_size` (gevent's `pool.size = n`) starts workers at once, or
//! retires the surplus as soon as the queue leaves them idle, and waits for that. A job dropped without running (the pool was killed or dropped)
//! completes its result with [`GreenletError::Killed`], so no waiter waits forever.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_deque::{Injector, Steal};
use parking_lot::{Condvar, Mutex};
use verdant_hub::park;
use verdant_hub::{Greenlet, GreenletError, RemoteWaker, WorkGuard, catch_panic};
use verdant_pool::{MapError, MapIter, Order, Reporter};

use crate::result::{Slot, ThreadResult};

/// How long an idle worker looks for the next job before parking.
const WORKER_SPIN: Duration = Duration::from_micros(50);

/// A task waiting for, or running on, a worker.
///
/// Both ways out go through [`Shared::task_finished`], which keeps the pool's two counts
/// in step with the outcome becoming visible.
trait Job: Send {
    fn run(self: Box<Self>, pool: &Shared);
    fn cancel(self: Box<Self>, pool: &Shared);
}

/// A task and the slot its outcome goes to. Dropping it unrun cancels it.
struct Task<F, T> {
    f: Option<F>,
    slot: Arc<Slot<T>>,
    /// Keeps the submitting hub from declaring a deadlock while the task is pending.
    _work: Option<WorkGuard>,
}

impl<F: FnOnce() -> T + Send, T: Send> Job for Task<F, T> {
    fn run(mut self: Box<Self>, pool: &Shared) {
        let f = self.f.take().expect("a task runs once");
        // The span ends (is recorded) before the outcome can wake anyone.
        let span = verdant_hub::trace::span("thread-pool task");
        let outcome = catch_panic(f).map_err(GreenletError::from_unwind);
        drop(span);
        pool.task_finished(|uncount| {
            let _ = self.slot.complete_then(outcome, uncount);
        });
    }

    fn cancel(mut self: Box<Self>, pool: &Shared) {
        if self.f.take().is_some() {
            pool.task_finished(|uncount| {
                let _ = self.slot.complete_then(Err(GreenletError::Killed), uncount);
            });
        }
    }
}

impl<F, T> Drop for Task<F, T> {
    fn drop(&mut self) {
        if self.f.take().is_some() {
            let _ = self.slot.complete(Err(GreenletError::Killed));
        }
    }
}

thread_local! {
    /// The id of the pool whose worker this thread is (0: not a worker).
    static WORKER_OF: Cell<usize> = const { Cell::new(0) };
}

/// Shared by the pool's handles and its workers.
struct Shared {
    id: usize,
    queue: Injector<Box<dyn Job>>,
    maxsize: AtomicUsize,
    /// Workers between jobs that are still spinning (not parked).
    spinning: AtomicUsize,
    /// Tasks submitted whose outcome is not stored yet (`len`). Drops *before* the outcome
    /// becomes visible: whoever sees a result also sees the count without it.
    unfinished: AtomicUsize,
    /// Tasks submitted whose waiters have not been told yet (`join`). Drops *after* the
    /// outcome became visible: a `join` that returns sees every result.
    outstanding: AtomicUsize,
    workers: Mutex<Workers>,
    /// Parked workers wait here.
    wakeup: Condvar,
    /// A `set_size` on a thread without a hub waits here for workers to retire.
    retired: Condvar,
    /// Who waits in `join` for `outstanding` to reach zero.
    idle: Mutex<Vec<RemoteWaker>>,
    idle_native: Condvar,
}

#[derive(Default)]
struct Workers {
    alive: usize,
    parked: usize,
    /// Set when the last handle is dropped: workers exit as soon as they are idle.
    closed: bool,
    /// A `set_size` below `alive`: workers retire when the queue is empty until `alive`
    /// is down to it.
    shrink_to: Option<usize>,
    /// Greenlets waiting in `set_size` for workers to retire.
    size_waiters: Vec<RemoteWaker>,
}

impl Workers {
    /// Whether an idle worker should exit because of a `set_size` below `alive`.
    fn over_size(&self) -> bool {
        self.shrink_to.is_some_and(|size| self.alive > size)
    }

    /// A worker exits: one fewer alive; returns whom to tell (the `set_size` waiters).
    fn retire_one(&mut self) -> Vec<RemoteWaker> {
        self.alive -= 1;
        if self.shrink_to.is_some_and(|size| self.alive <= size) {
            self.shrink_to = None;
        }
        std::mem::take(&mut self.size_waiters)
    }
}

impl Shared {
    fn steal(&self) -> Option<Box<dyn Job>> {
        loop {
            match self.queue.steal() {
                Steal::Success(job) => return Some(job),
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
    }

    /// Whether this worker should exit (the pool shrank or closed).
    fn should_retire(&self, workers: &Workers) -> bool {
        workers.closed || workers.alive > self.maxsize.load(Ordering::SeqCst)
    }

    fn worker_loop(self: Arc<Shared>) {
        WORKER_OF.with(|w| w.set(self.id));
        loop {
            if let Some(job) = self.steal() {
                job.run(&self);
                continue;
            }
            if self.spin_for_job() {
                continue;
            }
            let mut workers = self.workers.lock();
            loop {
                // A queued task keeps a worker that only `set_size` would retire: the
                // pool shrinks no further than its pending tasks need.
                let queued = !self.queue.is_empty();
                if self.should_retire(&workers) || (!queued && workers.over_size()) {
                    let waiters = workers.retire_one();
                    drop(workers);
                    self.retired.notify_all();
                    for waiter in waiters {
                        let _ = waiter.wake();
                    }
                    return;
                }
                if queued {
                    break;
                }
                workers.parked += 1;
                self.wakeup.wait(&mut workers);
                workers.parked -= 1;
            }
        }
    }

    /// Spins for a while looking for a job; returns whether one appeared.
    fn spin_for_job(&self) -> bool {
        self.spinning.fetch_add(1, Ordering::SeqCst);
        let until = Instant::now() + WORKER_SPIN;
        let found = loop {
            if !self.queue.is_empty() {
                break true;
            }
            for _ in 0..64 {
                std::hint::spin_loop();
            }
            if Instant::now() >= until {
                break false;
            }
        };
        self.spinning.fetch_sub(1, Ordering::SeqCst);
        // A job pushed while we were counted as spinning did not wake anyone: look again.
        found || !self.queue.is_empty()
    }

    /// Takes a finished (or cancelled) task off both counts: `complete` stores its outcome
    /// and calls the closure it is given just before making the outcome visible, which
    /// drops `unfinished`; once `complete` returned, `outstanding` drops, and if that was
    /// the last task, `join` waiters are woken.
    fn task_finished(&self, complete: impl FnOnce(&dyn Fn())) {
        complete(&|| {
            self.unfinished.fetch_sub(1, Ordering::SeqCst);
        });
        if self.outstanding.fetch_sub(1, Ordering::SeqCst) == 1 {
            let waiters = std::mem::take(&mut *self.idle.lock());
            for waiter in waiters {
                let _ = waiter.wake();
            }
            self.idle_native.notify_all();
        }
    }

    fn submit(self: &Arc<Shared>, job: Box<dyn Job>) {
        self.unfinished.fetch_add(1, Ordering::SeqCst);
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        self.queue.push(job);
        // Spinning workers will find queued jobs, one each: skip the wake-up only while
        // there are as many spinners as jobs waiting. (Skipping whenever one spins left
        // a burst of jobs that wait for each other to one worker, with the others parked.)
        if self.spinning.load(Ordering::SeqCst) >= self.queue.len() {
            return;
        }
        let mut workers = self.workers.lock();
        if workers.parked > 0 {
            self.wakeup.notify_one();
        } else if workers.alive < self.maxsize.load(Ordering::SeqCst) {
            workers.alive += 1;
            drop(workers);
            self.start_worker();
        }
    }

    fn start_worker(self: &Arc<Shared>) {
        let shared = self.clone();
        let started = std::thread::Builder::new()
            .name(format!("verdant-threadpool-{}", self.id))
            .spawn(move || shared.worker_loop());
        if let Err(err) = started {
            self.workers.lock().alive -= 1;
            verdant_hub::report::report(format!(
                "verdant: could not start a thread-pool worker: {err}"
            ));
        }
    }

    /// Drops every queued job (completing each with `Killed`).
    fn cancel_pending(&self) -> usize {
        let mut cancelled = 0;
        while let Some(job) = self.steal() {
            job.cancel(self);
            cancelled += 1;
        }
        cancelled
    }

    /// Waits until at most `size` workers are alive.
    fn wait_for_size(&self, size: usize) {
        if !verdant_hub::has_hub() {
            let mut workers = self.workers.lock();
            while workers.alive > size {
                self.retired.wait(&mut workers);
            }
            return;
        }
        // A worker retires and takes the wakers under the same lock: a waker pushed
        // before is woken, and `wait_until` looks again after pushing.
        let register = |waker| self.workers.lock().size_waiters.push(RemoteWaker::new(waker));
        let shrunk = || self.workers.lock().alive <= size;
        park::wait_until(&"a thread pool to shrink (set_size)", None, register, shrunk);
    }

    fn join_until(&self, deadline: Option<Instant>) -> bool {
        let idle = || self.outstanding.load(Ordering::SeqCst) == 0;
        if idle() {
            return true;
        }
        if !verdant_hub::has_hub() {
            let mut waiters = self.idle.lock();
            while !idle() {
                match deadline {
                    None => self.idle_native.wait(&mut waiters),
                    Some(d) => {
                        if self.idle_native.wait_until(&mut waiters, d).timed_out() {
                            return idle();
                        }
                    }
                }
            }
            return true;
        }
        // The last task to finish takes the wakers out under the same lock, after its count
        // dropped: a waker pushed before that is woken, and `wait_until` looks again after
        // pushing, so a task finishing in between is seen.
        let register = |waker| self.idle.lock().push(RemoteWaker::new(waker));
        park::wait_until(&"a thread pool to finish its tasks (join)", deadline, register, idle)
    }
}

/// The last `ThreadPool` handle closes the pool when dropped.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.workers.lock().closed = true;
        self.shared.cancel_pending();
        self.shared.wakeup.notify_all();
    }
}

/// A pool of native threads for CPU-bound or blocking work (gevent's `ThreadPool`).
///
/// Cheap to clone, `Send + Sync`. Waiting for a task blocks only the calling greenlet
/// (other greenlets run meanwhile); from a thread without a hub it blocks the thread.
/// Dropping the last handle cancels queued tasks (their results report
/// [`GreenletError::Killed`]) and lets the workers exit once idle; running tasks finish.
///
/// ```
/// use verdant_threadpool::ThreadPool;
///
/// let pool = ThreadPool::new(4);
/// let sum = pool.apply(|| (1..=1000u64).sum::<u64>()); // runs on a worker thread
/// assert_eq!(sum, 500500);
/// let results: Vec<_> = (0..8u64).map(|i| pool.spawn(move || i * i)).collect();
/// assert_eq!(results.iter().map(|r| r.get().unwrap()).sum::<u64>(), 140);
/// ```
#[derive(Clone)]
pub struct ThreadPool {
    handle: Arc<Handle>,
}

impl ThreadPool {
    /// A pool running at most `maxsize` worker threads (started lazily). `0` holds tasks
    /// until the size is raised.
    pub fn new(maxsize: usize) -> ThreadPool {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(1);
        let shared = Arc::new(Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            queue: Injector::new(),
            maxsize: AtomicUsize::new(maxsize),
            spinning: AtomicUsize::new(0),
            unfinished: AtomicUsize::new(0),
            outstanding: AtomicUsize::new(0),
            workers: Mutex::new(Workers::default()),
            wakeup: Condvar::new(),
            retired: Condvar::new(),
            idle: Mutex::new(Vec::new()),
            idle_native: Condvar::new(),
        });
        ThreadPool { handle: Arc::new(Handle { shared }) }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Runs `f` on a worker thread; the result says when it is done.
    pub fn spawn<F, T>(&self, f: F) -> ThreadResult<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (result, slot) = ThreadResult::new();
        let work = verdant_hub::has_hub().then(|| verdant_hub::remote_handle().begin_work());
        let task = Task { f: Some(f), slot, _work: work };
        self.shared().submit(Box::new(task));
        result
    }

    /// Runs `f` on a worker and returns its value; only the calling greenlet waits. Called
    /// from one of this pool's own workers, runs `f` right there. A panic in `f` is
    /// re-raised here.
    pub fn apply<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if self.is_current_worker() {
            return f();
        }
        reraise(self.spawn(f).take())
    }

    /// Starts `f` on a worker and returns at once a greenlet (on this thread's hub) that
    /// waits for it and then calls `callback` with the value (unless `f` panicked).
    pub fn apply_async<F, T, C>(&self, f: F, callback: C) -> Greenlet<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
        C: FnOnce(&T) + 'static,
    {
        let result = self.spawn(f);
        verdant_hub::spawn(move || {
            let value = reraise(result.take());
            callback(&value);
            value
        })
    }

    /// Like [`apply`](Self::apply), then calls `callback` with the value (in the calling
    /// greenlet) before returning it.
    pub fn apply_cb<F, T, C>(&self, f: F, callback: C) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
        C: FnOnce(&T),
    {
        let value = self.apply(f);
        callback(&value);
        value
    }

    /// Applies `f` to every item on the workers; values in input order, or the first
    /// failure by position (the same machinery as the greenlet pools).
    pub fn map<I, A, F, T>(&self, f: F, items: I) -> Result<Vec<T>, MapError>
    where
        I: IntoIterator<Item = A> + 'static,
        A: Send + 'static,
        F: Fn(A) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        let mut values = Vec::new();
        let mut first_error: Option<MapError> = None;
        for item in self.imap(f, items) {
            match item {
                Ok(value) => values.push(value),
                Err(error) if first_error.as_ref().is_none_or(|e| error.index() < e.index()) => {
                    first_error = Some(error)
                }
                Err(_) => {}
            }
        }
        first_error.map_or(Ok(values), Err)
    }

    /// Applies `f` to every item on the workers, yielding results in input order.
    pub fn imap<I, A, F, T>(&self, f: F, items: I) -> MapIter<T>
    where
        I: IntoIterator<Item = A> + 'static,
        A: Send + 'static,
        F: Fn(A) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        self.start_map(f, items, Order::Input, None)
    }

    /// Applies `f` to every item on the workers, yielding results as they complete.
    pub fn imap_unordered<I, A, F, T>(&self, f: F, items: I) -> MapIter<T>
    where
        I: IntoIterator<Item = A> + 'static,
        A: Send + 'static,
        F: Fn(A) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        self.start_map(f, items, Order::Completion, None)
    }

    /// Like [`imap`](Self::imap) or [`imap_unordered`](Self::imap_unordered), with at most
    /// `maxsize` results finished but not yet read (and so at most that many queued).
    pub fn imap_maxsize<I, A, F, T>(
        &self,
        f: F,
        items: I,
        order: Order,
        maxsize: usize,
    ) -> MapIter<T>
    where
        I: IntoIterator<Item = A> + 'static,
        A: Send + 'static,
        F: Fn(A) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        self.start_map(f, items, order, Some(maxsize))
    }

    fn start_map<I, A, F, T>(
        &self,
        f: F,
        items: I,
        order: Order,
        maxsize: Option<usize>,
    ) -> MapIter<T>
    where
        I: IntoIterator<Item = A> + 'static,
        A: Send + 'static,
        F: Fn(A) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        let f = Arc::new(f);
        let pool = self.clone();
        let (iter, _feeder) = verdant_pool::start_map(
            items,
            move |item: A, reporter: Reporter<T>| {
                let f = f.clone();
                let result = pool.spawn(move || f(item));
                result.when_done(move |result| reporter.report(result.take()));
            },
            order,
            maxsize,
        );
        iter
    }

    /// Waits until every submitted task has finished; returns at once if none is pending.
    pub fn join(&self) {
        self.shared().join_until(None);
    }

    /// Waits at most `timeout`; returns whether every task has finished.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.shared().join_until(Instant::now().checked_add(timeout))
    }

    /// Cancels every queued task (their results report [`GreenletError::Killed`]) and
    /// retires idle workers; tasks already running finish. Returns how many were
    /// cancelled. The pool stays usable.
    pub fn kill(&self) -> usize {
        let cancelled = self.shared().cancel_pending();
        self.shared().wakeup.notify_all();
        cancelled
    }

    /// Tasks submitted and not finished (queued or running).
    pub fn len(&self) -> usize {
        self.shared().unfinished.load(Ordering::SeqCst)
    }

    /// Whether no task is queued or running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Worker threads alive now.
    pub fn size(&self) -> usize {
        self.shared().workers.lock().alive
    }

    /// The most worker threads allowed.
    pub fn maxsize(&self) -> usize {
        self.shared().maxsize.load(Ordering::SeqCst)
    }

    /// Changes the most worker threads allowed. Lowering it retires workers as they become
    /// idle; 0 holds new tasks until it is raised again. Raising it starts workers for
    /// queued tasks.
    pub fn set_maxsize(&self, maxsize: usize) {
        let shared = self.shared();
        shared.maxsize.store(maxsize, Ordering::SeqCst);
        shared.wakeup.notify_all();
        let mut workers = shared.workers.lock();
        while !shared.queue.is_empty() && workers.alive < maxsize {
            workers.alive += 1;
            drop(workers);
            shared.start_worker();
            workers = shared.workers.lock();
        }
    }

    /// Starts or retires worker threads now until `size` are alive (gevent's
    /// `pool.size = n`); an error above [`maxsize`](Self::maxsize) (gevent raises
    /// `ValueError`).
    ///
    /// Growing starts the threads before it returns; they wait for tasks. Shrinking
    /// retires idle workers at once and busy ones as they finish, but never while tasks
    /// are queued: the pool shrinks no further than its pending work allows, and this
    /// waits (parking only the calling greenlet) until `size` are left, as gevent's setter
    /// does. Called from one of the pool's own workers, it does not wait (that worker
    /// could not retire while it waits).
    ///
    /// As in gevent, `size` is not a limit: later tasks start workers again, up to
    /// `maxsize`, when none is idle.
    ///
    /// ```
    /// use verdant_threadpool::ThreadPool;
    ///
    /// let pool = ThreadPool::new(4);
    /// pool.set_size(3).unwrap();
    /// assert_eq!(pool.size(), 3); // started, idle
    /// pool.set_size(1).unwrap();
    /// assert_eq!(pool.size(), 1);
    /// assert!(pool.set_size(5).is_err()); // above maxsize
    /// ```
    pub fn set_size(&self, size: usize) -> Result<(), SizeError> {
        let maxsize = self.maxsize();
        if size > maxsize {
            return Err(SizeError { size, maxsize });
        }
        let shared = self.shared();
        let mut workers = shared.workers.lock();
        workers.shrink_to = (workers.alive > size).then_some(size);
        while workers.alive < size {
            workers.alive += 1;
            drop(workers);
            shared.start_worker();
            workers = shared.workers.lock();
        }
        let shrinking = workers.shrink_to.is_some();
        drop(workers);
        if shrinking {
            shared.wakeup.notify_all(); // parked workers look again, and retire
            if !self.is_current_worker() {
                shared.wait_for_size(size);
            }
        }
        Ok(())
    }

    /// Whether the calling thread is one of this pool's workers.
    pub fn is_current_worker(&self) -> bool {
        WORKER_OF.with(Cell::get) == self.shared().id
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("size", &self.size())
            .field("maxsize", &self.maxsize())
            .field("unfinished", &self.len())
            .finish()
    }
}

/// [`ThreadPool::set_size`] was asked for more workers than the pool's `maxsize` (gevent
/// raises `ValueError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeError {
    /// The size asked for.
    pub size: usize,
    /// The pool's `maxsize` then.
    pub maxsize: usize,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let SizeError { size, maxsize } = self;
        write!(f, "a thread pool's size cannot be above its maxsize: {size} > {maxsize}")
    }
}

impl std::error::Error for SizeError {}

/// Returns a task's value, or re-raises its failure in the caller.
pub(crate) fn reraise<T>(outcome: Result<T, GreenletError>) -> T {
    match outcome {
        Ok(value) => value,
        Err(GreenletError::Panicked(panic)) => panic.resume(),
        Err(other) => std::panic::resume_unwind(Box::new(other.to_string())),
    }
}
