//! What callers hold while a pool works: [`AsyncResult`] (processing's result objects) and
//! [`IMap`] (the iterator of `imap` and `imap_unordered`). Waiting on either parks only
//! the calling greenlet.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use verdant_hub::park::{self, WaitList, Waker};
use verdant_sync::Waitable;

use crate::error::{GetError, NotReady, TaskError, Timeout};

/// A result that a pool will deliver later: processing's `ApplyResult`/`MapResult`.
/// Clones share the result; the value can be taken once.
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
/// assert_eq!(result.get(None), Err(GetError::Taken));
/// ```
pub struct AsyncResult<T, E = TaskError> {
    cell: Rc<Slot<T, E>>,
}

struct Slot<T, E> {
    outcome: RefCell<Option<Result<T, E>>>,
    taken: Cell<bool>,
    waiters: WaitList,
}

impl<T, E> AsyncResult<T, E> {
    pub(crate) fn new() -> AsyncResult<T, E> {
        let cell =
            Slot { outcome: RefCell::new(None), taken: Cell::new(false), waiters: WaitList::new() };
        AsyncResult { cell: Rc::new(cell) }
    }

    /// Stores the outcome and wakes the waiters (the pool does this once).
    pub(crate) fn complete(&self, outcome: Result<T, E>) {
        *self.cell.outcome.borrow_mut() = Some(outcome);
        self.cell.waiters.notify_all();
    }

    /// Whether the task has finished (processing's `ready()`).
    pub fn ready(&self) -> bool {
        self.cell.taken.get() || self.cell.outcome.borrow().is_some()
    }

    /// Whether the task finished without an error; an error if it has not finished
    /// (processing raises `AssertionError`).
    pub fn successful(&self) -> Result<bool, NotReady> {
        if self.cell.taken.get() {
            return Ok(true);
        }
        match &*self.cell.outcome.borrow() {
            None => Err(NotReady),
            Some(outcome) => Ok(outcome.is_ok()),
        }
    }

    /// Waits until the task finishes or `timeout` passes (`None`: no limit); returns
    /// whether it finished.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if self.ready() {
                return true;
            }
            self.cell.waiters.push(park::waker());
            if park::park_until(&"a process-pool result", deadline) {
                return self.ready();
            }
        }
    }
}

impl<T, E: Clone> AsyncResult<T, E> {
    /// Waits (at most `timeout`, `None`: no limit) and moves the value out. A failure is
    /// returned on every call; the value only once.
    pub fn get(&self, timeout: Option<Duration>) -> Result<T, GetError<E>> {
        if !self.wait(timeout) {
            return Err(GetError::Timeout);
        }
        if self.cell.taken.get() {
            return Err(GetError::Taken);
        }
        let mut outcome = self.cell.outcome.borrow_mut();
        match outcome.as_ref().expect("ready") {
            Err(error) => Err(GetError::Failed(error.clone())),
            Ok(_) => {
                self.cell.taken.set(true);
                Ok(outcome.take().expect("ready").ok().expect("a value"))
            }
        }
    }
}

impl<T, E: Clone + fmt::Debug> AsyncResult<T, E> {
    /// Waits without limit and moves the outcome out (for results nobody else holds).
    pub(crate) fn outcome(self) -> Result<T, E> {
        self.get(None).map_err(|e| match e {
            GetError::Failed(error) => error,
            other => unreachable!("a private result waited for without timeout: {other:?}"),
        })
    }
}

impl<T, E> Clone for AsyncResult<T, E> {
    fn clone(&self) -> Self {
        AsyncResult { cell: self.cell.clone() }
    }
}

impl<T, E> Waitable for AsyncResult<T, E> {
    fn is_ready(&self) -> bool {
        self.ready()
    }

    fn add_waiter(&self, waker: Waker) {
        self.cell.waiters.push(waker);
    }
}

impl<T, E> fmt::Debug for AsyncResult<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult").field("ready", &self.ready()).finish()
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

/// The iterator of [`imap`](crate::ProcessPool::imap) and
/// [`imap_unordered`](crate::ProcessPool::imap_unordered): one `Result` per input item.
/// The items of a failed chunk each yield its error.
pub struct IMap<R> {
    arrivals: Rc<Arrivals<R>>,
    /// How many items each chunk holds.
    chunk_lens: Vec<usize>,
    ordered: bool,
    next_chunk: usize,
    chunks_taken: usize,
    current: VecDeque<Result<R, TaskError>>,
}

impl<R> IMap<R> {
    pub(crate) fn new(arrivals: Rc<Arrivals<R>>, chunk_lens: Vec<usize>) -> IMap<R> {
        let ordered = arrivals.order.is_none();
        IMap {
            arrivals,
            chunk_lens,
            ordered,
            next_chunk: 0,
            chunks_taken: 0,
            current: VecDeque::new(),
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
        loop {
            if let Some(item) = self.current.pop_front() {
                return Ok(Some(item));
            }
            if self.chunks_taken == self.chunk_lens.len() {
                return Ok(None);
            }
            if !self.take_arrived_chunk() {
                self.arrivals.waiters.push(park::waker());
                if park::park_until(&"a process-pool imap result", deadline)
                    && !self.take_arrived_chunk()
                {
                    return Err(Timeout);
                }
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
            .field("chunks", &self.chunk_lens.len())
            .field("chunks_taken", &self.chunks_taken)
            .finish()
    }
}
