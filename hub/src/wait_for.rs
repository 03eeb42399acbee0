//! [`WaitFor`]: how many of several things to wait for, and for how long: gevent's `count`
//! and `timeout` keywords of `wait`, `iwait` and `joinall`, as one small value that reads
//! at the call site (`WaitFor::any().timeout(d)`).

use std::time::{Duration, Instant};

/// How many of several objects to wait for (gevent's `count`), and for at most how long
/// (gevent's `timeout`). Used by [`joinall`](crate::joinall) and verdant-sync's `wait` and
/// `iwait`.
///
/// ```
/// use std::time::Duration;
/// use verdant_hub::WaitFor;
///
/// assert_eq!(WaitFor::all(), WaitFor::default());
/// let first = WaitFor::any().timeout(Duration::from_secs(5));
/// assert_eq!(first.count, Some(1));
/// assert_eq!(first.timeout, Some(Duration::from_secs(5)));
/// assert_eq!(WaitFor::count(2).wanted(5), 2);
/// assert_eq!(WaitFor::count(9).wanted(5), 5); // never more than there are
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitFor {
    /// At most this many objects (`None`: all of them).
    pub count: Option<usize>,
    /// Give up after this long (`None`: never).
    pub timeout: Option<Duration>,
}

impl WaitFor {
    /// Every object (gevent's default, `count=None`), with no time limit.
    pub const fn all() -> WaitFor {
        WaitFor { count: None, timeout: None }
    }

    /// The first object that is ready (`count=1`).
    pub const fn any() -> WaitFor {
        WaitFor::count(1)
    }

    /// The first `n` objects that are ready (`count=n`).
    pub const fn count(n: usize) -> WaitFor {
        WaitFor { count: Some(n), timeout: None }
    }

    /// The same, giving up after `timeout` (`timeout=`).
    pub const fn timeout(self, timeout: Duration) -> WaitFor {
        WaitFor { timeout: Some(timeout), ..self }
    }

    /// How many of `len` objects to wait for.
    pub fn wanted(&self, len: usize) -> usize {
        self.count.map_or(len, |count| count.min(len))
    }

    /// The instant the timeout ends at, counted from now (`None`: never).
    pub fn deadline(&self) -> Option<Instant> {
        self.timeout.and_then(|timeout| Instant::now().checked_add(timeout))
    }
}
