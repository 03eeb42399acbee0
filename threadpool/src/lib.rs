//! A pool of native threads for verdant (gevent's `gevent.threadpool`): CPU-bound or
//! blocking work runs on worker threads while the greenlets keep running, and a finished
//! task wakes the waiting greenlet through its hub's inbox.
//!
//! ```
//! use std::time::Duration;
//! use verdant_threadpool::ThreadPool;
//!
//! let pool = ThreadPool::new(2);
//! let ticker = verdant_hub::spawn(|| {
//!     let mut ticks = 0;
//!     for _ in 0..5 {
//!         verdant_hub::sleep(Duration::from_millis(2));
//!         ticks += 1;
//!     }
//!     ticks
//! });
//! // The hashing runs on a worker; the ticker greenlet keeps ticking meanwhile.
//! let digest = pool.apply(|| (0..2_000_000u64).fold(0u64, |h, x| h.rotate_left(5) ^ x));
//! assert_ne!(digest, 0);
//! assert_eq!(ticker.get(), Ok(5));
//! ```
//!
//! | module | holds |
//! |---|---|
//! | `pool.rs` | [`ThreadPool`]: the queue, the workers, map/imap through `verdant-pool` |
//! | `result.rs` | [`ThreadResult`]: waiting from a greenlet or a plain thread |
//! | `local.rs` | callbacks that run on the submitting hub's thread |
//! | `executor.rs` | [`ThreadPoolExecutor`] |
//!
//! # Waking the hub
//!
//! A worker that finishes a task stores the outcome and wakes each waiting greenlet with a
//! [`RemoteWaker`](verdant_hub::RemoteWaker): a message in that hub's inbox, with an
//! eventfd write only if the hub is asleep and its inbox was empty. While a hub waits only
//! for such work it spins briefly before sleeping (`HubConfig::spin`), and idle workers
//! spin briefly before parking, because waking a sleeping thread on another core costs tens
//! of microseconds here, more than most tasks.

#![doc(test(attr(deny(warnings))))]

mod executor;
mod local;
mod pool;
mod result;

pub use executor::{Future, ShutDown, ThreadPoolExecutor};
pub use pool::{SizeError, ThreadPool};
pub use result::ThreadResult;

#[cfg(test)]
mod tests {
    #[test]
    fn handles_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::ThreadPool>();
        check::<super::ThreadResult<u8>>();
        check::<super::ThreadPoolExecutor>();
    }
}
