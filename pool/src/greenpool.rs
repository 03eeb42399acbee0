//! eventlet's `GreenPool` and `GreenPile`, for programs ported from eventlet.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::ops::Deref;
use std::rc::Rc;

use verdant_hub::park::WaitList;
use verdant_hub::{Greenlet, GreenletError};

use crate::{MapIter, Pool};

/// The error of calling [`GreenPool::waitall`] from one of the pool's own greenlets, which
/// would wait for itself forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitallFromMember;

impl fmt::Display for WaitallFromMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("waitall() called from one of the pool's own greenlets would never return")
    }
}

impl Error for WaitallFromMember {}

/// A pool of greenlets with eventlet's names (eventlet's `GreenPool`): `spawn` waits while
/// `size` greenlets are running.
///
/// It is a [`Pool`] and derefs to it: `spawn`, `imap` and everything else gevent's pool
/// offers work unchanged; what is here are eventlet's own names.
///
/// ```
/// use verdant_pool::GreenPool;
///
/// let pool = GreenPool::new(100);
/// let doubled: Vec<u32> = pool.imap(|x: u32| x * 2, 0..5).map(Result::unwrap).collect();
/// assert_eq!(doubled, [0, 2, 4, 6, 8]);
/// pool.spawn_n(|| ());
/// pool.waitall().unwrap();
/// assert_eq!(pool.running(), 0);
/// ```
#[derive(Clone)]
pub struct GreenPool {
    pool: Pool,
}

impl Default for GreenPool {
    /// eventlet's default size: 1000.
    fn default() -> Self {
        GreenPool::new(1000)
    }
}

impl GreenPool {
    /// A pool running at most `size` greenlets at once.
    pub fn new(size: usize) -> GreenPool {
        GreenPool { pool: Pool::new(size) }
    }

    /// Runs `f` in a greenlet of the pool, waiting while the pool is full (eventlet's
    /// `spawn`).
    ///
    /// Reentrant, as eventlet's: called from one of the pool's own greenlets while the
    /// pool is full, it runs `f` right away in the caller (which holds the place `f` would
    /// wait for) and returns a greenlet that is already dead with `f`'s value; a panic in
    /// `f` then goes on in the caller. (gevent's `Pool::spawn`, which this shadows, waits
    /// instead.)
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> Greenlet<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        if !self.reentering_a_full_pool() {
            return self.pool.spawn(f);
        }
        let value = f();
        let done = verdant_hub::spawn(move || value);
        done.join(); // a switch: the handle is dead, as eventlet's is, when returned
        done
    }

    /// Like [`spawn`](Self::spawn), without a handle to the result (eventlet's
    /// `spawn_n`). Run inline (reentering a full pool), a panic in `f` is reported by the
    /// panic hook and goes no further, as eventlet prints and drops the exception.
    #[track_caller]
    pub fn spawn_n<F, T>(&self, f: F)
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        if self.reentering_a_full_pool() {
            let _ = verdant_hub::catch_panic(f);
            return;
        }
        self.pool.spawn(f);
    }

    /// Whether a spawn now would wait for a place the caller itself holds.
    fn reentering_a_full_pool(&self) -> bool {
        self.pool.is_full() && self.pool.current_is_member()
    }

    /// Waits until every greenlet of the pool has finished.
    ///
    /// # Errors
    ///
    /// If called from one of the pool's own greenlets (it would wait for itself).
    pub fn waitall(&self) -> Result<(), WaitallFromMember> {
        if self.pool.contains(&verdant_hub::current()) {
            return Err(WaitallFromMember);
        }
        self.pool.join();
        Ok(())
    }

    /// Free places: `size` minus the running greenlets. Negative after a `resize` below
    /// the number running.
    pub fn free(&self) -> isize {
        self.pool.slots().free()
    }

    /// Greenlets running in the pool.
    pub fn running(&self) -> usize {
        self.pool.slots().used()
    }

    /// Greenlets waiting in `spawn` for a free place.
    pub fn waiting(&self) -> usize {
        self.pool.slots().blocked()
    }

    /// eventlet's `starmap`: Rust closures take their arguments as one tuple and can
    /// destructure it (`|(a, b)| a + b`), so this is [`imap`](Pool::imap).
    pub fn starmap<I, A, F, T>(&self, f: F, items: I) -> MapIter<T>
    where
        I: IntoIterator<Item = A> + 'static,
        A: 'static,
        F: Fn(A) -> T + 'static,
        T: 'static,
    {
        self.pool.imap(f, items)
    }

    /// The gevent-style [`Pool`] behind this pool (what `Deref` gives too).
    pub fn as_pool(&self) -> &Pool {
        &self.pool
    }
}

impl Deref for GreenPool {
    type Target = Pool;

    /// The pool behind: `spawn`, `imap`, `apply`, `map`, `kill`, `join`, `len`...
    fn deref(&self) -> &Pool {
        &self.pool
    }
}

impl fmt::Debug for GreenPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenPool")
            .field("running", &self.running())
            .field("free", &self.free())
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// A set of tasks whose results are read in the order they were spawned (eventlet's
/// `GreenPile`), running on its own pool or a shared [`GreenPool`].
///
/// A `GreenPile` is a handle: clones share the pile, so several greenlets can spawn into
/// it while another one iterates. As eventlet's, the iterator waits for every task spawned
/// (or still waiting for a place in the pool) and ends once none is left: a greenlet that
/// has not spawned yet when that happens is not waited for.
///
/// ```
/// use std::time::Duration;
/// use verdant_pool::GreenPile;
///
/// let pile = GreenPile::new(10);
/// for ms in [30u64, 10, 20] {
///     pile.spawn(move || { verdant_hub::sleep(Duration::from_millis(ms)); ms });
/// }
/// let results: Vec<u64> = pile.map(Result::unwrap).collect();
/// assert_eq!(results, [30, 10, 20]); // spawn order, not completion order
/// ```
pub struct GreenPile<T> {
    pile: Rc<Pile<T>>,
}

/// What every handle of one pile shares.
struct Pile<T> {
    pool: GreenPool,
    /// Tasks spawned, or being spawned, whose results have not been read (eventlet's
    /// `counter`): the iterator ends when it is 0.
    outstanding: Cell<usize>,
    /// The started tasks, in spawn order.
    started: RefCell<VecDeque<Greenlet<T>>>,
    /// The readers waiting for the next task to start.
    readers: WaitList,
}

impl<T> Pile<T> {
    fn settled(&self) -> bool {
        !self.started.borrow().is_empty() || self.outstanding.get() == 0
    }

    /// One task fewer to wait for (read, or its spawn failed).
    fn uncount(&self) {
        self.outstanding.set(self.outstanding.get() - 1);
        if self.outstanding.get() == 0 {
            self.readers.notify_all(); // no more to wait for
        }
    }
}

/// Counts a spawn in progress; if the spawn unwinds (killed while waiting for a place),
/// takes it back, so the reader does not wait for a task that never starts.
struct Spawning<'a, T>(&'a Pile<T>);

impl<T> Drop for Spawning<'_, T> {
    fn drop(&mut self) {
        self.0.uncount();
    }
}

impl<T: 'static> GreenPile<T> {
    /// A pile with a pool of its own, running at most `size` tasks at once.
    pub fn new(size: usize) -> GreenPile<T> {
        GreenPile::with_pool(&GreenPool::new(size))
    }

    /// A pile sharing `pool` (and its limit) with whoever else uses it.
    pub fn with_pool(pool: &GreenPool) -> GreenPile<T> {
        let pile = Pile {
            pool: pool.clone(),
            outstanding: Cell::new(0),
            started: RefCell::new(VecDeque::new()),
            readers: WaitList::new(),
        };
        GreenPile { pile: Rc::new(pile) }
    }

    /// Starts `f` in the pool (waiting while it is full); its result comes out of the
    /// iterator after those spawned before it.
    #[track_caller]
    pub fn spawn<F>(&self, f: F)
    where
        F: FnOnce() -> T + 'static,
    {
        let pile = &*self.pile;
        pile.outstanding.set(pile.outstanding.get() + 1);
        let spawning = Spawning(pile);
        let greenlet = pile.pool.spawn(f);
        std::mem::forget(spawning);
        pile.started.borrow_mut().push_back(greenlet);
        pile.readers.notify_all();
    }

    /// The pool the tasks run in.
    pub fn pool(&self) -> &GreenPool {
        &self.pile.pool
    }

    /// Tasks spawned (or being spawned) whose results have not been read.
    pub fn len(&self) -> usize {
        self.pile.outstanding.get()
    }

    /// Whether every result has been read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: 'static> Default for GreenPile<T> {
    /// eventlet's `GreenPile()`: a pool of its own of 1000.
    fn default() -> Self {
        GreenPile::new(1000)
    }
}

impl<T> Clone for GreenPile<T> {
    fn clone(&self) -> Self {
        GreenPile { pile: self.pile.clone() }
    }
}

impl<T: 'static> Iterator for GreenPile<T> {
    type Item = Result<T, GreenletError>;

    /// Waits for the next result in spawn order; `None` once no task is left to wait for.
    fn next(&mut self) -> Option<Self::Item> {
        let pile = &*self.pile;
        pile.readers.wait_until(&"the next task of a GreenPile", None, || pile.settled());
        let greenlet = pile.started.borrow_mut().pop_front()?;
        pile.uncount();
        Some(greenlet.take())
    }
}

impl<T> fmt::Debug for GreenPile<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenPile").field("outstanding", &self.pile.outstanding.get()).finish()
    }
}
