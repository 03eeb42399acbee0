//! `ThreadPoolExecutor`: the `concurrent.futures` shape over a [`ThreadPool`].

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{ThreadPool, ThreadResult};

/// What `submit` returns: a [`ThreadResult`], usable with `verdant::sync::wait`/`iwait`.
pub type Future<T> = ThreadResult<T>;

/// The error of submitting to an executor after [`shutdown`](ThreadPoolExecutor::shutdown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutDown;

impl fmt::Display for ShutDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot submit to an executor that was shut down")
    }
}

impl Error for ShutDown {}

/// Python's `concurrent.futures.ThreadPoolExecutor` shape (gevent's
/// `ThreadPoolExecutor`): `submit` returns a future that greenlets can wait on.
///
/// ```
/// use verdant_threadpool::ThreadPoolExecutor;
///
/// let executor = ThreadPoolExecutor::new(2);
/// let future = executor.submit(|| 6 * 7).unwrap();
/// assert_eq!(future.get(), Ok(42));
/// let squares: Vec<u32> = executor.map(|x: u32| x * x, 1..4).map(Result::unwrap).collect();
/// assert_eq!(squares, [1, 4, 9]);
/// executor.shutdown(true);
/// assert!(executor.submit(|| ()).is_err());
/// ```
#[derive(Clone)]
pub struct ThreadPoolExecutor {
    pool: ThreadPool,
    shut_down: Arc<AtomicBool>,
}

impl ThreadPoolExecutor {
    /// An executor with at most `max_workers` threads.
    pub fn new(max_workers: usize) -> ThreadPoolExecutor {
        ThreadPoolExecutor {
            pool: ThreadPool::new(max_workers),
            shut_down: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Schedules `f` and returns its future.
    pub fn submit<F, T>(&self, f: F) -> Result<Future<T>, ShutDown>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if self.shut_down.load(Ordering::SeqCst) {
            return Err(ShutDown);
        }
        Ok(self.pool.spawn(f))
    }

    /// Submits `f` for every item at once and yields the results in input order.
    pub fn map<I, A, F, T>(
        &self,
        f: F,
        items: I,
    ) -> impl Iterator<Item = Result<T, verdant_hub::GreenletError>> + use<I, A, F, T>
    where
        I: IntoIterator<Item = A>,
        A: Send + 'static,
        F: Fn(A) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        let f = Arc::new(f);
        let futures: Vec<Future<T>> = items
            .into_iter()
            .map(|item| {
                let f = f.clone();
                self.pool.spawn(move || f(item))
            })
            .collect();
        futures.into_iter().map(|future| future.take())
    }

    /// Refuses new work from now on; with `wait`, also waits until every submitted task has
    /// finished.
    pub fn shutdown(&self, wait: bool) {
        self.shut_down.store(true, Ordering::SeqCst);
        if wait {
            self.pool.join();
        }
    }

    /// The thread pool behind the executor.
    pub fn pool(&self) -> &ThreadPool {
        &self.pool
    }
}

impl fmt::Debug for ThreadPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolExecutor")
            .field("pool", &self.pool)
            .field("shut_down", &self.shut_down.load(Ordering::Relaxed))
            .finish()
    }
}
