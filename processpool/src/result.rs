//! What callers hold while a pool works: [`ApplyResult`] (processing's result objects, on
//! the hub's one result cell, [`ResultCell`]) and [`IMap`] (the iterator of `imap` and
//! `imap_unordered`, which reads its input as the caller reads results). Waiting on
//! either parks only the calling greenlet.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use verdant_hub::cell::{Outcome, ResultCell};
use verdant_hub::park::{WaitList, Waker};
use verdant_sync::Waitable;

use crate::error::{GetError, NotReady, TaskError, Timeout};

/// A result that a pool will deliver later: processing's `ApplyResult` (and `MapResult`,
/// its subclass: what `map_async` returns is an `ApplyResult<Vec<R>, MapError>`). Clones
/// share the result.
///
/// [`get`](Self::get) returns a clone of the value, as often as asked (processing's
/// `get()`); [`take`](Self::take) moves it out, once, for values that are not `Clone`. A
/// failure is reported on every call.
///
/// ```no_run
/// # fn square(x: u64) -> u64 { x * x }
/// # verdant_processpool::worker_main();
/// use std::time::Duration;
/// use verdant_processpool::{GetError, ProcessPool};
///
/// let pool = ProcessPool::new(Some(1)).unwrap();
/// let result = pool.apply_async(square, 10);
/// assert_eq!(result.get(Some(Duration::from_secs(10))), Ok(100));
/// assert_eq!(result.get(None), Ok(100)); // again
/// assert_eq!(result.take(None), Ok(100)); // moved out
/// assert_eq!(result.get(None), Err(GetError::Taken));
/// ```
pub struct ApplyResult<T, E = TaskError> {
    cell: Rc<ResultCell<T, E>>,
}

/// The name this type had before it took processing's own.
#[deprecated(note = "renamed ApplyResult, processing's name for it")]
pub type AsyncResult<T, E = TaskError> = ApplyResult<T, E>;

impl<T, E> ApplyResult<T, E> {
    pub(crate) fn new() -> ApplyResult<T, E> {
        ApplyResult { cell: Rc::new(ResultCell::new()) }
    }

    /// Stores the outcome and wakes the waiters (the pool does this once).
    pub(crate) fn complete(&self, outcome: Result<T, E>) {
        let stored = self.cell.complete(outcome);
        debug_assert!(stored.is_ok(), "a process-pool result is completed once");
    }

    /// Whether the task has finished (processing's `ready()`).
    pub fn ready(&self) -> bool {
        self.cell.ready()
    }

    /// Whether the task finished without an error; an error if it has not finished
    /// (processing raises `AssertionError`).
    pub fn successful(&self) -> Result<bool, NotReady> {
        if !self.ready() {
            return Err(NotReady);
        }
        Ok(self.cell.successful())
    }

    /// Waits until the task finishes or `timeout` passes (`None`: no limit); returns
    /// whether it finished.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        self.cell.wait_until(&"a process-pool result", deadline)
    }
}

impl<T, E: Clone> ApplyResult<T, E> {
    /// Waits (at most `timeout`, `None`: no limit) and moves the value out. A failure is
    /// returned on every call; the value only once (later `take`s and `get`s return
    /// [`GetError::Taken`]).
    pub fn take(&self, timeout: Option<Duration>) -> Result<T, GetError<E>> {
        if !self.wait(timeout) {
            return Err(GetError::Timeout);
        }
        read(self.cell.take())
    }
}

impl<T: Clone, E: Clone> ApplyResult<T, E> {
    /// Waits (at most `timeout`, `None`: no limit) and returns a clone of the value (or
    /// the failure); it stays for the next reader.
    pub fn get(&self, timeout: Option<Duration>) -> Result<T, GetError<E>> {
        if !self.wait(timeout) {
            return Err(GetError::Timeout);
        }
        read(self.cell.cloned())
    }
}

/// A finished result's outcome as what `get`/`take` return.
fn read<T, E>(outcome: Outcome<T, E>) -> Result<T, GetError<E>> {
    match outcome {
        Outcome::Value(value) => Ok(value),
        Outcome::Failed(error) => Err(GetError::Failed(error)),
        Outcome::Taken => Err(GetError::Taken),
        Outcome::Pending => unreachable!("read after the wait: the result is ready"),
    }
}

impl<T, E: Clone + fmt::Debug> ApplyResult<T, E> {
    /// Waits without limit and moves the outcome out (for results nobody else holds).
    pub(crate) fn outcome(self) -> Result<T, E> {
        self.take(None).map_err(|e| match e {
            GetError::Failed(error) => error,
            other => unreachable!("a private result waited for without timeout: {other:?}"),
        })
    }
}

impl<T, E> Clone for ApplyResult<T, E> {
    fn clone(&self) -> Self {
        ApplyResult { cell: self.cell.clone() }
    }
}

impl<T, E> Waitable for ApplyResult<T, E> {
    fn is_ready(&self) -> bool {
        self.ready()
    }

    fn add_waiter(&self, waker: Waker) {
        self.cell.add_waiter(waker);
    }
}

impl<T, E> fmt::Debug for ApplyResult<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplyResult").field("ready", &self.ready()).finish()
    }
}

/// Where the chunks of an `imap` arrive.
pub(crate) struct Arrivals<R> {
    chunks: RefCell<HashMap<usize, Result<Vec<R>, TaskError>>>,
    /// Chunk numbers in arrival order, kept for `imap_unordered` only.
    order: Option<RefCell<VecDeque<usize>>>,
    waiters: WaitList,
}

impl<R> Arrivals<R> {
    pub(crate) fn new(ordered: bool) -> Rc<Arrivals<R>> {
        Rc::new(Arrivals {
            chunks: RefCell::new(HashMap::new()),
            order: (!ordered).then(|| RefCell::new(VecDeque::new())),
            waiters: WaitList::new(),
        })
    }

    pub(crate) fn deliver(&self, chunk: usize, outcome: Result<Vec<R>, TaskError>) {
        self.chunks.borrow_mut().insert(chunk, outcome);
        if let Some(order) = &self.order {
            order.borrow_mut().push_back(chunk);
        }
        self.waiters.notify_all();
    }
}

/// What an [`IMap`] got when it asked its input for the next chunk.
pub(crate) enum Pulled {
    /// A chunk of this many items was submitted (or failed at once, if it could not be
    /// encoded); its outcome arrives under the next chunk number.
    Chunk(usize),
    /// The input is exhausted.
    End,
    /// No chunk, and no more: the input panicked, or the pool no longer takes work.
    Failed(TaskError),
}

/// The input side of an imap: reads the next chunk from the user's iterator and submits
/// it (`pool.rs`).
pub(crate) trait ChunkSource {
    fn pull(&mut self) -> Pulled;
}

/// The iterator of [`imap`](crate::ProcessPool::imap) and
/// [`imap_unordered`](crate::ProcessPool::imap_unordered): one `Result` per input item.
/// The items of a failed chunk each yield its error.
///
/// It reads its input lazily: at most a window of chunks is submitted and not yet read
/// by the caller; reading a chunk's results lets the next one be read from the input.
/// If the input panics, the results of the chunks before it come first, then one
/// [`TaskError::InputPanicked`], and the iteration ends.
pub struct IMap<R> {
    arrivals: Rc<Arrivals<R>>,
    /// `None` once the input is exhausted or failed.
    source: Option<Box<dyn ChunkSource>>,
    /// Chunks submitted and not yet taken by the reader, at most.
    window: usize,
    /// How many items each chunk submitted so far holds.
    chunk_lens: Vec<usize>,
    ordered: bool,
    next_chunk: usize,
    chunks_taken: usize,
    current: VecDeque<Result<R, TaskError>>,
    /// Why the input ended early: yielded after every chunk submitted before it.
    input_error: Option<TaskError>,
}

impl<R> IMap<R> {
    /// An iterator over what `source` submits, which it asks for chunks at once (up to
    /// `window`, so the workers start) and then as the caller reads.
    pub(crate) fn new(
        arrivals: Rc<Arrivals<R>>,
        source: Box<dyn ChunkSource>,
        window: usize,
    ) -> IMap<R> {
        let ordered = arrivals.order.is_none();
        let mut imap = IMap {
            arrivals,
            source: Some(source),
            window: window.max(1),
            chunk_lens: Vec::new(),
            ordered,
            next_chunk: 0,
            chunks_taken: 0,
            current: VecDeque::new(),
            input_error: None,
        };
        imap.fill();
        imap
    }

    /// Submits chunks from the input until the window is full or the input ends.
    fn fill(&mut self) {
        while self.chunk_lens.len() - self.chunks_taken < self.window {
            let Some(source) = self.source.as_mut() else { return };
            match source.pull() {
                Pulled::Chunk(len) => self.chunk_lens.push(len),
                Pulled::End => self.source = None,
                Pulled::Failed(error) => {
                    self.input_error = Some(error);
                    self.source = None;
                }
            }
        }
    }

    /// The next result, waiting at most `timeout` for it (processing's `next(timeout)`):
    /// `Err(Timeout)` if it did not come in time (the iterator stays usable).
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Result<R, TaskError>>, Timeout> {
        self.next_until(Instant::now().checked_add(timeout))
    }

    fn next_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Result<R, TaskError>>, Timeout> {
        let arrivals = self.arrivals.clone();
        loop {
            self.fill();
            if let Some(item) = self.current.pop_front() {
                return Ok(Some(item));
            }
            if self.chunks_taken == self.chunk_lens.len() {
                return Ok(self.input_error.take().map(Err));
            }
            let reason = "a process-pool imap result";
            if !arrivals.waiters.wait_until(&reason, deadline, || self.take_arrived_chunk()) {
                return Err(Timeout);
            }
        }
    }

    /// Moves the next chunk (in input order, or in arrival order) into `current`.
    fn take_arrived_chunk(&mut self) -> bool {
        let chunk = if self.ordered {
            self.next_chunk
        } else {
            match self.arrivals.order.as_ref().and_then(|o| o.borrow_mut().pop_front()) {
                Some(chunk) => chunk,
                None => return false,
            }
        };
        let Some(outcome) = self.arrivals.chunks.borrow_mut().remove(&chunk) else {
            return false;
        };
        self.next_chunk += 1;
        self.chunks_taken += 1;
        match outcome {
            Ok(values) => self.current.extend(values.into_iter().map(Ok)),
            Err(error) => {
                self.current.extend((0..self.chunk_lens[chunk]).map(|_| Err(error.clone())))
            }
        }
        true
    }
}

impl<R> Iterator for IMap<R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_until(None).expect("no deadline, no timeout")
    }
}

impl<R> fmt::Debug for IMap<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("ordered", &self.ordered)
            .field("chunks_submitted", &self.chunk_lens.len())
            .field("input_open", &self.source.is_some())
            .field("chunks_taken", &self.chunks_taken)
            .finish()
    }
}
