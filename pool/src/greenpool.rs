//! eventlet's `GreenPool` and `GreenPile`, for programs ported from eventlet.

use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::ops::Deref;

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
        GreenPool { pool: Pool::new(Some(size)) }
    }

    /// Like `spawn`, without a handle to the result.
    pub fn spawn_n<F, T>(&self, f: F)
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        self.pool.spawn(f);
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
        let _ = self.pool.join(None, false);
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

    /// Changes the size. Lowering it lets the running greenlets finish; no new one starts
    /// until fewer than `size` run (meanwhile `free` is negative).
    pub fn resize(&self, size: usize) {
        self.pool.resize(Some(size));
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
/// ```
/// use std::time::Duration;
/// use verdant_pool::GreenPile;
///
/// let mut pile = GreenPile::new(10);
/// for ms in [30u64, 10, 20] {
///     pile.spawn(move || { verdant_hub::sleep(Duration::from_millis(ms)); ms });
/// }
/// let results: Vec<u64> = pile.map(Result::unwrap).collect();
/// assert_eq!(results, [30, 10, 20]); // spawn order, not completion order
/// ```
pub struct GreenPile<T> {
    pool: GreenPool,
    pending: VecDeque<Greenlet<T>>,
}

impl<T: 'static> GreenPile<T> {
    /// A pile with a pool of its own, running at most `size` tasks at once.
    pub fn new(size: usize) -> GreenPile<T> {
        GreenPile::with_pool(&GreenPool::new(size))
    }

    /// A pile sharing `pool` (and its limit) with whoever else uses it.
    pub fn with_pool(pool: &GreenPool) -> GreenPile<T> {
        GreenPile { pool: pool.clone(), pending: VecDeque::new() }
    }

    /// Starts `f` in the pool (waiting while it is full); its result comes out of the
    /// iterator after those spawned before it.
    pub fn spawn<F>(&mut self, f: F)
    where
        F: FnOnce() -> T + 'static,
    {
        let greenlet = self.pool.spawn(f);
        self.pending.push_back(greenlet);
    }

    /// Tasks spawned whose results have not been read.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether every result has been read.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

impl<T: 'static> Iterator for GreenPile<T> {
    type Item = Result<T, GreenletError>;

    /// Waits for the next result in spawn order; `None` once all were read.
    fn next(&mut self) -> Option<Self::Item> {
        self.pending.pop_front().map(|greenlet| greenlet.take())
    }
}

impl<T> fmt::Debug for GreenPile<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenPile").field("pending", &self.pending.len()).finish()
    }
}
