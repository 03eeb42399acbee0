//! When failed worker start-ups break the pool.
//!
//! A start-up is everything from starting the process to its `Ready`: the exec, its
//! hello, the initializer. It can fail because of the program (its `main` does not call
//! `worker_main()` first, the initializer panics), or because something happened to that
//! one process (it was killed, the machine was out of memory for a moment).
//!
//! * A worker running another binary is refused, and breaks the pool at once: a retry
//!   would run the same file.
//! * Until one of the pool's workers has become ready, the first failure breaks the pool:
//!   nothing has ever worked, so a retry would most likely repeat the failure (and rerun
//!   the top of a `main` that lacks `worker_main()`, which may have effects).
//! * After that, a failed start-up is a worker death like any other: the supervisor starts
//!   another worker, after a back-off, and only [`MAX_FAILED_STARTS`] failures in a row
//!   (with no worker becoming ready in between) break the pool.

use std::cell::Cell;
use std::time::Duration;

/// Failed start-ups in a row that break a pool that once had a worker ready.
pub(crate) const MAX_FAILED_STARTS: u32 = 5;

/// The wait before the first retry; it doubles with every failure in a row (50, 100, 200,
/// 400 ms: the pool gives up after about 750 ms of failures).
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Why a worker did not become ready.
#[derive(Debug)]
pub(crate) struct StartFailure {
    /// What happened, as a sentence that names the process.
    what: String,
    kind: FailureKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FailureKind {
    /// It ended, or sent something other than a hello, before its hello: what a program
    /// does whose `main` does not call `worker_main()` first.
    NoHello,
    /// It said hello from another binary: refused.
    OtherBinary,
    /// Anything else (it could not be started; it died, stalled or failed its initializer
    /// after its hello).
    Other,
}

impl StartFailure {
    pub(crate) fn no_hello(what: String) -> StartFailure {
        StartFailure { what, kind: FailureKind::NoHello }
    }

    pub(crate) fn other_binary(what: String) -> StartFailure {
        StartFailure { what, kind: FailureKind::OtherBinary }
    }

    pub(crate) fn other(what: String) -> StartFailure {
        StartFailure { what, kind: FailureKind::Other }
    }
}

/// What the supervisor does after a failed start-up.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Start another worker after this wait.
    RetryAfter(Duration),
    /// Break the pool; why, for [`TaskError::PoolBroken`](crate::TaskError::PoolBroken).
    Break(String),
}

/// The pool's record of start-ups, shared by its supervisors.
#[derive(Debug, Default)]
pub(crate) struct Startups {
    /// Whether any worker of the pool has become ready.
    any_ready: Cell<bool>,
    /// Failed start-ups since a worker last became ready.
    failures_in_a_row: Cell<u32>,
}

impl Startups {
    /// A worker became ready.
    pub(crate) fn succeeded(&self) {
        self.any_ready.set(true);
        self.failures_in_a_row.set(0);
    }

    /// A worker did not become ready: retry, or break the pool (and why).
    pub(crate) fn failed(&self, failure: StartFailure) -> Verdict {
        let StartFailure { what, kind } = failure;
        if kind == FailureKind::OtherBinary {
            return Verdict::Break(what);
        }
        if !self.any_ready.get() {
            return Verdict::Break(match kind {
                FailureKind::NoHello => format!(
                    "{what}; does main() call verdant::processpool::worker_main() before \
                     anything else?"
                ),
                _ => what,
            });
        }
        let failures = self.failures_in_a_row.get() + 1;
        self.failures_in_a_row.set(failures);
        if failures >= MAX_FAILED_STARTS {
            return Verdict::Break(format!(
                "{failures} consecutive worker start-ups failed: {what}"
            ));
        }
        Verdict::RetryAfter(FIRST_BACKOFF * 2u32.pow(failures - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn died() -> StartFailure {
        StartFailure::no_hello("worker process 7 exited with status 1 before it said hello".into())
    }

    #[test]
    fn the_first_start_breaks_at_once_and_names_worker_main_only_without_a_hello() {
        let Verdict::Break(why) = Startups::default().failed(died()) else { panic!() };
        assert!(why.contains("before it said hello") && why.contains("worker_main()"), "{why}");
        let initializer = StartFailure::other("the initializer failed in worker process 7".into());
        let Verdict::Break(why) = Startups::default().failed(initializer) else { panic!() };
        assert!(!why.contains("worker_main"), "{why}");
    }

    #[test]
    fn later_failures_back_off_and_break_after_a_run_of_them() {
        let startups = Startups::default();
        startups.succeeded();
        let waits: Vec<Verdict> = (1..MAX_FAILED_STARTS).map(|_| startups.failed(died())).collect();
        let ms = |ms| Verdict::RetryAfter(Duration::from_millis(ms));
        assert_eq!(waits, [ms(50), ms(100), ms(200), ms(400)]);
        let Verdict::Break(why) = startups.failed(died()) else { panic!() };
        assert!(
            why.starts_with("5 consecutive worker start-ups failed: worker process 7"),
            "{why}"
        );
        assert!(!why.contains("worker_main"), "{why}");
    }

    #[test]
    fn a_ready_worker_resets_the_run_and_another_binary_always_breaks() {
        let startups = Startups::default();
        startups.succeeded();
        for _ in 0..3 * MAX_FAILED_STARTS {
            assert!(matches!(startups.failed(died()), Verdict::RetryAfter(_)));
            startups.succeeded();
        }
        let refused = StartFailure::other_binary("another binary: refused".into());
        assert_eq!(startups.failed(refused), Verdict::Break("another binary: refused".into()));
    }
}
