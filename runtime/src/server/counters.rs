//! [`Counters`]: a server's statistics as atomics, so that a [`MultiServer`](super::MultiServer)
//! can add up the counters of servers on other hubs from any thread.
//!
//! Only the server's own hub writes them (relaxed increments, one per connection or
//! error); readers on other threads see each counter exactly, and the set of them as of
//! some moment close to the read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::ServerStats;

/// The counters of one server.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    accepted: AtomicU64,
    accept_errors: AtomicU64,
    handler_errors: AtomicU64,
    timed_out: AtomicU64,
    /// Handlers alive (spawned and not yet ended): an [`Active`] guard each.
    active: AtomicUsize,
}

/// What to count.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Count {
    Accepted,
    AcceptError,
    HandlerError,
    TimedOut,
}

impl Counters {
    pub(crate) fn count(&self, what: Count) {
        let counter = match what {
            Count::Accepted => &self.accepted,
            Count::AcceptError => &self.accept_errors,
            Count::HandlerError => &self.handler_errors,
            Count::TimedOut => &self.timed_out,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as stats.
    pub(crate) fn stats(&self) -> ServerStats {
        ServerStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            accept_errors: self.accept_errors.load(Ordering::Relaxed),
            handler_errors: self.handler_errors.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
        }
    }
}

/// Counts one handler as active from its spawn until it is dropped: with the handler's
/// closure, so whether the handler ran, returned, panicked or was killed before starting.
#[derive(Debug)]
pub(crate) struct Active(Arc<Counters>);

impl Active {
    pub(crate) fn begin(counters: &Arc<Counters>) -> Active {
        counters.active.fetch_add(1, Ordering::Relaxed);
        Active(counters.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::ops::Add for ServerStats {
    type Output = ServerStats;

    /// The stats of two servers together (a [`MultiServer`](super::MultiServer)'s hubs).
    fn add(self, other: ServerStats) -> ServerStats {
        ServerStats {
            accepted: self.accepted + other.accepted,
            active: self.active + other.active,
            accept_errors: self.accept_errors + other.accept_errors,
            handler_errors: self.handler_errors + other.handler_errors,
            timed_out: self.timed_out + other.timed_out,
        }
    }
}

impl std::iter::Sum for ServerStats {
    fn sum<I: Iterator<Item = ServerStats>>(stats: I) -> ServerStats {
        stats.fold(ServerStats::default(), |a, b| a + b)
    }
}
