//! `wait` and `iwait`: block until some of several things are ready (gevent's
//! `gevent.wait` / `gevent.iwait`).

use std::collections::VecDeque;
use std::time::Instant;

use verdant_hub::WaitFor;
use verdant_hub::park::{self, Waker};

/// Something a greenlet can wait for: a greenlet (until it dies), an [`Event`] (until set),
/// an [`AsyncResult`] (until it holds a result), and later thread-pool results.
///
/// [`Event`]: super::Event
/// [`AsyncResult`]: super::AsyncResult
pub trait Waitable {
    /// Whether waiting would return at once.
    fn is_ready(&self) -> bool;

    /// Registers `waker` to be woken when this becomes ready. Waking a stale waker must be
    /// harmless (wakers only wake the wait they were made for).
    ///
    /// Objects that become ready on other threads must make registration and readiness
    /// atomic with respect to each other: a waker registered before the object becomes
    /// ready is woken, and [`wait`]/[`iwait`] re-check `is_ready` after registering, so a
    /// completion between their check and their registration is not missed.
    fn add_waiter(&self, waker: Waker);
}

impl<T: 'static> Waitable for verdant_hub::Greenlet<T> {
    fn is_ready(&self) -> bool {
        self.ready()
    }

    fn add_waiter(&self, waker: Waker) {
        self.as_ref().add_waiter(waker);
    }
}

impl Waitable for verdant_hub::GreenletRef {
    fn is_ready(&self) -> bool {
        self.ready()
    }

    fn add_waiter(&self, waker: Waker) {
        self.add_joiner(waker);
    }
}

/// Waits until [`WaitFor::count`] of `objects` (all of them by default) are ready, or
/// [`WaitFor::timeout`] passes (gevent's `wait(objects, timeout, count)`). Returns the
/// indices of at most `count` ready objects, in the order they became ready: it is
/// [`iwait`] collected.
///
/// "The order they became ready" is the order this greenlet saw them become ready:
/// objects that became ready while it was not running (two events set one after the
/// other by a greenlet that did not block in between) come out in index order.
///
/// ```
/// use std::time::Duration;
/// use verdant_sync::{Event, WaitFor, Waitable, wait};
///
/// let (a, b) = (Event::new(), Event::new());
/// let b2 = b.clone();
/// verdant_hub::spawn(move || b2.set());
/// let first = WaitFor::any().timeout(Duration::from_secs(30));
/// assert_eq!(wait(&[&a as &dyn Waitable, &b], first), [1]);
/// ```
pub fn wait(objects: &[&dyn Waitable], wait: WaitFor) -> Vec<usize> {
    iwait(objects, wait).collect()
}

/// Yields the index of each object as it becomes ready, until [`WaitFor::count`] of them
/// (all by default) have been yielded or [`WaitFor::timeout`] (for the whole iteration)
/// passes (gevent's `iwait(objects, timeout, count)`). Objects seen ready at the same look
/// come out in index order (see [`wait`]).
///
/// ```
/// use verdant_sync::{Event, WaitFor, Waitable, iwait};
///
/// let go = Event::new();
/// let slow = verdant_hub::spawn({
///     let go = go.clone();
///     move || go.wait() // finishes only once `go` is set
/// });
/// let fast = verdant_hub::spawn(|| ());
/// let mut order = Vec::new();
/// for i in iwait(&[&slow as &dyn Waitable, &fast], WaitFor::all()) {
///     order.push(i);
///     go.set(); // `fast` came first; now let `slow` finish
/// }
/// assert_eq!(order, [1, 0]);
/// ```
pub fn iwait<'a>(objects: &'a [&'a dyn Waitable], wait: WaitFor) -> IWait<'a> {
    IWait {
        objects,
        seen: vec![false; objects.len()],
        arrived: VecDeque::new(),
        left: wait.wanted(objects.len()),
        deadline: wait.deadline(),
    }
}

/// The iterator of [`iwait`].
#[derive(Debug)]
pub struct IWait<'a> {
    objects: &'a [&'a dyn Waitable],
    /// Objects already seen ready (queued in `arrived` or yielded).
    seen: Vec<bool>,
    /// Seen ready, not yielded yet, in the order they were seen.
    arrived: VecDeque<usize>,
    /// How many more to yield.
    left: usize,
    deadline: Option<Instant>,
}

impl std::fmt::Debug for dyn Waitable + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waitable").field("ready", &self.is_ready()).finish()
    }
}

impl IWait<'_> {
    /// Queues every object newly seen ready, in index order. Returns whether there was one.
    fn look(&mut self) -> bool {
        let before = self.arrived.len();
        for (i, object) in self.objects.iter().enumerate() {
            if !self.seen[i] && object.is_ready() {
                self.seen[i] = true;
                self.arrived.push_back(i);
            }
        }
        self.arrived.len() > before
    }
}

impl Iterator for IWait<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.look();
        if self.arrived.is_empty() {
            let (objects, seen) = (self.objects, &self.seen);
            let pending = || (0..objects.len()).filter(|&i| !seen[i]);
            // As in `park::wait_until`'s doc: it looks again after registering, before
            // parking, for objects made ready on other threads.
            park::wait_until(
                &"wait() or iwait() on several objects",
                self.deadline,
                |waker| pending().for_each(|i| objects[i].add_waiter(waker.clone())),
                || pending().any(|i| objects[i].is_ready()),
            );
            self.look();
        }
        let Some(next) = self.arrived.pop_front() else {
            self.left = 0; // timed out: the iteration is over
            return None;
        };
        self.left -= 1;
        Some(next)
    }
}
