//! `sleep` and `yield_now`: the two ways to give up the CPU on purpose.

use std::time::{Duration, Instant};

use crate::hub::with_hub;
use crate::park;

/// Lets every greenlet that is ready run once, then returns (gevent's `sleep(0)`).
///
/// From a greenlet, it goes to the back of the ready queue. From the main code, it runs
/// the loop for one pass over the ready queue. Either way the hub also polls I/O (without
/// blocking) and fires due timers before this returns. A kill or timeout pending for the
/// caller is raised here.
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
///
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let l = log.clone();
/// verdant_hub::spawn(move || l.borrow_mut().push("greenlet"));
/// log.borrow_mut().push("before yield");
/// verdant_hub::yield_now();
/// log.borrow_mut().push("after yield");
/// assert_eq!(*log.borrow(), ["before yield", "greenlet", "after yield"]);
/// ```
#[inline]
pub fn yield_now() {
    with_hub(|hub| hub.yield_current());
}

/// Blocks the calling greenlet for at least `duration`; other greenlets run meanwhile.
/// `sleep(Duration::ZERO)` is [`yield_now`].
///
/// Timers have millisecond resolution (the event loop's poll timeout): expect wake-ups up
/// to about a millisecond late, never early.
pub fn sleep(duration: Duration) {
    if duration.is_zero() {
        yield_now();
        return;
    }
    match Instant::now().checked_add(duration) {
        Some(deadline) => {
            // The deadline is ahead (duration > 0): skip park_until's clock check once.
            if !park::park_until_future(&"sleep", deadline) {
                sleep_until(deadline);
            }
        }
        None => loop {
            park::park(&"sleep (forever)");
        },
    }
}

/// Like [`sleep`], but the sleep does not keep the hub busy (gevent's
/// `sleep(seconds, ref=False)`): [`join_hub`](crate::join_hub) returns without waiting for
/// it, and a main code waiting only on this greenlet is reported as deadlocked. For
/// background greenlets (a periodic reporter) that should not keep a program alive.
///
/// From the thread's main code it is a plain `sleep`: the main code's own wait always
/// counts.
///
/// ```
/// use std::time::Duration;
///
/// let reporter = verdant_hub::spawn(|| loop {
///     verdant_hub::sleep_unref(Duration::from_secs(3600));
/// });
/// let worker = verdant_hub::spawn(|| 7);
/// assert!(verdant_hub::join_hub()); // the reporter's sleep does not count
/// assert_eq!(worker.value(), Some(7));
/// assert!(!reporter.ready());
/// ```
pub fn sleep_unref(duration: Duration) {
    let deadline = Instant::now().checked_add(duration);
    let Some(deadline) = deadline.filter(|_| !duration.is_zero() && crate::in_greenlet()) else {
        return sleep(duration); // no timer to unref (or the main code's own wait)
    };
    // Counted while `sleep_until` waits: its timer is live whenever it parks.
    let _unref = with_hub(|hub| hub.unref_timer());
    sleep_until(deadline);
}

/// Blocks the calling greenlet until `deadline`.
pub fn sleep_until(deadline: Instant) {
    while !park::park_until(&"sleep", Some(deadline)) {}
}
