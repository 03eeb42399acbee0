//! Queues between greenlets: gevent's `Queue` (FIFO), `LifoQueue`, `PriorityQueue` and
//! `JoinableQueue` are one type, [`Queue<T, K>`](Queue), whose [`Kind`] `K` says in which
//! order items leave ([`Fifo`], [`Lifo`], [`Priority`]) or adds task accounting
//! ([`Joinable`]). Every method is written once, for every kind; the joinable queue's own
//! methods are in an `impl` of their own.
//!
//! # Nothing is lost
//!
//! Items stay in the queue until a getter that is *running* takes one; a put only wakes a
//! getter. So a getter that is killed or times out after being woken has taken nothing. It
//! was, however, the one greenlet woken for that item: on its way out it wakes the next
//! getter if items remain (and a putter does the same for free space). A put never hands an
//! item to a dead getter, and items leave in the order the queue's kind defines.

use std::cell::{Cell, RefCell};
use std::error::Error;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use verdant_hub::park::WaitList;

use sealed::Store as _;

/// Why a put failed. The item comes back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PutError<T> {
    /// The queue was full (`put_nowait`, or `put_timeout` ran out of time).
    Full(T),
    /// The queue was closed.
    Closed(T),
}

impl<T> PutError<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(item) | PutError::Closed(item) => item,
        }
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("the queue is full"),
            PutError::Closed(_) => f.write_str("the queue is closed"),
        }
    }
}

impl<T> Error for PutError<T> {}

/// Why a get failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetError {
    /// The queue was empty (`get_nowait`, or `get_timeout` ran out of time).
    Empty,
    /// The queue is closed and empty: nothing will ever come.
    Closed,
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Empty => f.write_str("the queue is empty"),
            GetError::Closed => f.write_str("the queue is closed and empty"),
        }
    }
}

impl Error for GetError {}

/// The error of calling `task_done` more often than items were put.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskDoneError;

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done() called more times than there were items")
    }
}

impl Error for TaskDoneError {}

/// What a queue is: in which order its items leave, and whether it counts unfinished
/// tasks. Implemented by [`Fifo`], [`Lifo`], [`Priority`] and [`Joinable`] only.
pub trait Kind<T>: sealed::Kind<T> {}

/// First in, first out: gevent's `Queue` (`verdant_sync::Queue<T>` is `Queue<T, Fifo>`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fifo;

/// Last in, first out: gevent's `LifoQueue` (`verdant_sync::LifoQueue<T>` is
/// `Queue<T, Lifo>`).
///
/// ```
/// let q = verdant_sync::LifoQueue::new();
/// for i in 1..=3 { q.put(i).unwrap(); }
/// assert_eq!(q.get(), Ok(3));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lifo;

/// Smallest first: gevent's `PriorityQueue` (`verdant_sync::PriorityQueue<T>` is
/// `Queue<T, Priority>`). Use `(priority, item)` tuples to attach priorities.
///
/// ```
/// let q = verdant_sync::PriorityQueue::new();
/// for job in [(3, "later"), (1, "first"), (2, "then")] { q.put(job).unwrap(); }
/// assert_eq!(q.get(), Ok((1, "first")));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Priority;

/// First in, first out, counting unfinished work: gevent's `JoinableQueue`
/// (`verdant_sync::JoinableQueue<T>` is `Queue<T, Joinable>`). Every `put` adds one,
/// every [`task_done`](Queue::task_done) removes one, and [`join`](Queue::join) waits until
/// the count is zero.
///
/// ```
/// let q = verdant_sync::JoinableQueue::new();
/// let worker = {
///     let q = q.clone();
///     verdant_hub::spawn(move || {
///         while let Ok(job) = q.get() {
///             let _ = job * 2;
///             q.task_done().unwrap();
///         }
///     })
/// };
/// for job in 0..10 { q.put(job).unwrap(); }
/// q.join(); // every job was taken and marked done
/// q.close();
/// worker.join();
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Joinable;

mod sealed {
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, VecDeque};

    /// What a kind decides.
    pub trait Kind<T> {
        /// Where the items wait, which decides the order they leave in.
        type Store: Store<T>;
        /// The gevent name of the queue type, for `Debug`.
        const NAME: &'static str;
    }

    /// Where a queue keeps its items: the order in which they come out.
    pub trait Store<T>: Default {
        fn push(&mut self, item: T);
        fn pop(&mut self) -> Option<T>;
        fn peek(&self) -> Option<&T>;
        fn len(&self) -> usize;
    }

    impl<T> Kind<T> for super::Fifo {
        type Store = VecDeque<T>;
        const NAME: &'static str = "Queue";
    }

    impl<T> Kind<T> for super::Lifo {
        type Store = Vec<T>;
        const NAME: &'static str = "LifoQueue";
    }

    impl<T: Ord> Kind<T> for super::Priority {
        type Store = Smallest<T>;
        const NAME: &'static str = "PriorityQueue";
    }

    impl<T> Kind<T> for super::Joinable {
        type Store = VecDeque<T>;
        const NAME: &'static str = "JoinableQueue";
    }

    /// First in, first out.
    impl<T> Store<T> for VecDeque<T> {
        fn push(&mut self, item: T) {
            self.push_back(item);
        }
        fn pop(&mut self) -> Option<T> {
            self.pop_front()
        }
        fn peek(&self) -> Option<&T> {
            self.front()
        }
        fn len(&self) -> usize {
            VecDeque::len(self)
        }
    }

    /// Last in, first out.
    impl<T> Store<T> for Vec<T> {
        fn push(&mut self, item: T) {
            Vec::push(self, item);
        }
        fn pop(&mut self) -> Option<T> {
            Vec::pop(self)
        }
        fn peek(&self) -> Option<&T> {
            self.last()
        }
        fn len(&self) -> usize {
            Vec::len(self)
        }
    }

    /// Smallest first (gevent's `PriorityQueue` uses Python's min-heap).
    #[derive(Debug)]
    pub struct Smallest<T>(BinaryHeap<Reverse<T>>);

    impl<T: Ord> Default for Smallest<T> {
        fn default() -> Self {
            Smallest(BinaryHeap::new())
        }
    }

    impl<T: Ord> Store<T> for Smallest<T> {
        fn push(&mut self, item: T) {
            self.0.push(Reverse(item));
        }
        fn pop(&mut self) -> Option<T> {
            self.0.pop().map(|Reverse(item)| item)
        }
        fn peek(&self) -> Option<&T> {
            self.0.peek().map(|Reverse(item)| item)
        }
        fn len(&self) -> usize {
            self.0.len()
        }
    }
}

impl<T> Kind<T> for Fifo {}
impl<T> Kind<T> for Lifo {}
impl<T: Ord> Kind<T> for Priority {}
impl<T> Kind<T> for Joinable {}

/// The state every queue kind shares.
///
/// Closing is Python 3.13's `shutdown`: [`Queue::close`] is `shutdown()`,
/// [`Queue::shutdown_immediate`] is `shutdown(immediate=True)`, and the `Closed` errors are
/// its `ShutDown`.
struct Shared<T, K: Kind<T>> {
    items: RefCell<K::Store>,
    capacity: Option<usize>,
    closed: Cell<bool>,
    getters: WaitList,
    putters: WaitList,
    /// Items put and not yet marked done (read by [`Joinable`] queues).
    unfinished: Cell<usize>,
    all_done: WaitList,
}

/// While a getter (or putter) waits: if it unwinds after being woken, wake the next one
/// if what it was woken for is still there.
struct PassOn<'a, T, K: Kind<T>> {
    queue: &'a Shared<T, K>,
    getter: bool,
}

impl<T, K: Kind<T>> Drop for PassOn<'_, T, K> {
    fn drop(&mut self) {
        if self.getter && self.queue.len() > 0 {
            self.queue.getters.notify_one();
        } else if !self.getter && !self.queue.is_full() {
            self.queue.putters.notify_one();
        }
    }
}

impl<T, K: Kind<T>> Shared<T, K> {
    fn new(capacity: Option<usize>) -> Shared<T, K> {
        assert!(
            capacity != Some(0),
            "a queue of capacity 0 is a Channel: use verdant::sync::Channel"
        );
        Shared {
            items: RefCell::new(K::Store::default()),
            capacity,
            closed: Cell::new(false),
            getters: WaitList::new(),
            putters: WaitList::new(),
            unfinished: Cell::new(0),
            all_done: WaitList::new(),
        }
    }

    fn len(&self) -> usize {
        self.items.borrow().len()
    }

    fn is_full(&self) -> bool {
        self.capacity.is_some_and(|capacity| self.len() >= capacity)
    }

    #[inline]
    fn try_put(&self, item: T) -> Result<(), PutError<T>> {
        if self.closed.get() {
            return Err(PutError::Closed(item));
        }
        if self.is_full() {
            return Err(PutError::Full(item));
        }
        self.items.borrow_mut().push(item);
        self.unfinished.set(self.unfinished.get() + 1);
        self.getters.notify_one();
        Ok(())
    }

    #[inline]
    fn put_until(&self, item: T, deadline: Option<Instant>) -> Result<(), PutError<T>> {
        let item = match self.try_put(item) {
            Err(PutError::Full(item)) => item,
            done => return done,
        };
        let (mut item, mut done) = (Some(item), None);
        let pass_on = PassOn { queue: self, getter: false };
        self.putters.wait_until(&"Queue::put() on a full queue", deadline, || {
            match self.try_put(item.take().expect("not put yet")) {
                Err(PutError::Full(back)) => {
                    item = Some(back);
                    false
                }
                other => {
                    done = Some(other);
                    true
                }
            }
        });
        std::mem::forget(pass_on);
        done.unwrap_or_else(|| Err(PutError::Full(item.expect("not put"))))
    }

    #[inline]
    fn try_get(&self) -> Result<T, GetError> {
        let item = self.items.borrow_mut().pop();
        match item {
            Some(item) => {
                self.putters.notify_one();
                Ok(item)
            }
            None if self.closed.get() => Err(GetError::Closed),
            None => Err(GetError::Empty),
        }
    }

    #[inline]
    fn get_until(&self, deadline: Option<Instant>) -> Result<T, GetError> {
        match self.try_get() {
            Err(GetError::Empty) => {}
            done => return done,
        }
        let mut done = None;
        let pass_on = PassOn { queue: self, getter: true };
        self.getters.wait_until(&"Queue::get() on an empty queue", deadline, || {
            match self.try_get() {
                Err(GetError::Empty) => false,
                other => {
                    done = Some(other);
                    true
                }
            }
        });
        std::mem::forget(pass_on);
        done.unwrap_or(Err(GetError::Empty))
    }

    fn peek_until(&self, deadline: Option<Instant>) -> Result<T, GetError>
    where
        T: Clone,
    {
        let (mut parked, mut done) = (false, None);
        let pass_on = PassOn { queue: self, getter: true };
        self.getters.wait_until(&"Queue::peek() on an empty queue", deadline, || {
            // After a wake-up, a peeker consumed a getter's wake-up without taking the
            // item: pass it on.
            if std::mem::replace(&mut parked, true) && self.len() > 0 {
                self.getters.notify_one();
            }
            done = match self.items.borrow().peek() {
                Some(item) => Some(Ok(item.clone())),
                None if self.closed.get() => Some(Err(GetError::Closed)),
                None => None,
            };
            done.is_some()
        });
        std::mem::forget(pass_on);
        done.unwrap_or(Err(GetError::Empty))
    }

    fn close(&self) {
        self.closed.set(true);
        self.getters.notify_all();
        self.putters.notify_all();
    }

    /// Closes, and discards the items: each counts as done (Python 3.13's
    /// `shutdown(immediate=True)`). The items are dropped after the queue is let go of.
    fn close_immediately(&self) {
        let discarded = std::mem::take(&mut *self.items.borrow_mut());
        let done = discarded.len().min(self.unfinished.get());
        self.unfinished.set(self.unfinished.get() - done);
        self.close();
        if done > 0 && self.unfinished.get() == 0 {
            self.all_done.notify_all();
        }
        drop(discarded);
    }
}

/// A queue between greenlets, unbounded or bounded; its kind `K` says in which order items
/// leave (see the [module](self) and the kinds' pages). Cloning gives another handle to the
/// same queue.
///
/// `verdant_sync::Queue<T>` (FIFO), `LifoQueue<T>`, `PriorityQueue<T>` and
/// `JoinableQueue<T>` name this type with each kind, and are what to write:
/// `Queue::new()` needs to know the kind.
///
/// ```
/// use verdant_sync::Queue;
///
/// let q = Queue::bounded(2);
/// let producer = {
///     let q = q.clone();
///     verdant_hub::spawn(move || {
///         for i in 0..5 {
///             q.put(i).unwrap(); // waits while 2 items are queued
///         }
///         q.close();
///     })
/// };
/// let received: Vec<i32> = q.iter().collect();
/// assert_eq!(received, [0, 1, 2, 3, 4]);
/// producer.join();
/// ```
pub struct Queue<T, K: Kind<T> = Fifo> {
    inner: Rc<Shared<T, K>>,
}

impl<T, K: Kind<T>> Queue<T, K> {
    /// An unbounded queue: `put` never waits.
    pub fn new() -> Self {
        Queue { inner: Rc::new(Shared::new(None)) }
    }

    /// A queue holding at most `capacity` items: `put` waits while it is full.
    ///
    /// # Panics
    ///
    /// If `capacity` is 0: that is a [`Channel`](super::Channel).
    pub fn bounded(capacity: usize) -> Self {
        Queue { inner: Rc::new(Shared::new(Some(capacity))) }
    }

    /// Puts an item, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`PutError::Closed`] if the queue is (or gets) closed.
    #[inline]
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.inner.put_until(item, None)
    }

    /// Puts an item, waiting at most `timeout` for room ([`PutError::Full`] after).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.inner.put_until(item, Instant::now().checked_add(timeout))
    }

    /// Puts an item if there is room right now.
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        self.inner.try_put(item)
    }

    /// Takes an item, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`GetError::Closed`] once the queue is closed and empty.
    #[inline]
    pub fn get(&self) -> Result<T, GetError> {
        self.inner.get_until(None)
    }

    /// Takes an item, waiting at most `timeout` ([`GetError::Empty`] after).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.inner.get_until(Instant::now().checked_add(timeout))
    }

    /// Takes an item if there is one right now.
    pub fn get_nowait(&self) -> Result<T, GetError> {
        self.inner.try_get()
    }

    /// A copy of the item `get` would return, waiting while the queue is empty.
    pub fn peek(&self) -> Result<T, GetError>
    where
        T: Clone,
    {
        self.inner.peek_until(None)
    }

    /// Like [`peek`](Self::peek), without waiting.
    pub fn peek_nowait(&self) -> Result<T, GetError>
    where
        T: Clone,
    {
        match self.inner.items.borrow().peek() {
            Some(item) => Ok(item.clone()),
            None if self.inner.closed.get() => Err(GetError::Closed),
            None => Err(GetError::Empty),
        }
    }

    /// Items in the queue.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the queue holds no item.
    pub fn is_empty(&self) -> bool {
        self.inner.len() == 0
    }

    /// Whether a `put` would wait.
    pub fn is_full(&self) -> bool {
        self.inner.is_full()
    }

    /// The capacity given to [`bounded`](Self::bounded), or `None`.
    pub fn capacity(&self) -> Option<usize> {
        self.inner.capacity
    }

    /// Closes the queue (Python 3.13's `shutdown()`): puts fail from now on with
    /// [`PutError::Closed`] (Python's `ShutDown`), gets drain what is left and then fail
    /// with [`GetError::Closed`]; every waiting greenlet wakes up.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Closes the queue and discards its items (Python 3.13's `shutdown(immediate=True)`):
    /// every waiting getter and putter wakes up with a `Closed` error at once, and each
    /// discarded item counts as done for [`join`](Queue::join).
    ///
    /// ```
    /// use verdant_sync::{GetError, Queue};
    ///
    /// let q = Queue::new();
    /// q.put("left behind").unwrap();
    /// let getter = { let q = q.clone(); verdant_hub::spawn(move || (q.get(), q.get())) };
    /// q.shutdown_immediate();
    /// assert_eq!(getter.get(), Ok((Err(GetError::Closed), Err(GetError::Closed))));
    /// ```
    pub fn shutdown_immediate(&self) {
        self.inner.close_immediately();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
    }

    /// Iterates by calling `get` until the queue is closed and empty.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.get().ok())
    }

    /// Iterates over the items there right now, without waiting.
    pub fn try_iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.get_nowait().ok())
    }
}

/// The task accounting of gevent's `JoinableQueue`: every `put` counts one unfinished task.
impl<T> Queue<T, Joinable> {
    /// Marks one item taken from the queue as processed.
    ///
    /// # Errors
    ///
    /// If called more times than items were put.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let unfinished = self.inner.unfinished.get();
        if unfinished == 0 {
            return Err(TaskDoneError);
        }
        self.inner.unfinished.set(unfinished - 1);
        if unfinished == 1 {
            self.inner.all_done.notify_all();
        }
        Ok(())
    }

    /// Items put and not yet marked done.
    pub fn unfinished_tasks(&self) -> usize {
        self.inner.unfinished.get()
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) {
        self.join_until(None);
    }

    /// Waits at most `timeout`; returns whether every item was marked done.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.join_until(Instant::now().checked_add(timeout))
    }

    fn join_until(&self, deadline: Option<Instant>) -> bool {
        let all_done = || self.inner.unfinished.get() == 0;
        self.inner.all_done.wait_until(&"JoinableQueue::join()", deadline, all_done)
    }
}

impl<T, K: Kind<T>> Default for Queue<T, K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, K: Kind<T>> Clone for Queue<T, K> {
    fn clone(&self) -> Self {
        Queue { inner: self.inner.clone() }
    }
}

impl<T, K: Kind<T>> fmt::Debug for Queue<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(K::NAME)
            .field("len", &self.len())
            .field("capacity", &self.inner.capacity)
            .field("closed", &self.is_closed())
            .finish()
    }
}
