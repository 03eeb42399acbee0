//! `wait` and `iwait`: block until some of several things are ready (gevent's
//! `gevent.wait` / `gevent.iwait`).

use std::time::{Duration, Instant};

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

/// Waits until `count` of `objects` (all of them if `None`) are ready, or `timeout` passes.
/// Returns the indices of the ready objects, in index order.
///
/// ```
/// use std::time::Duration;
/// use verdant_sync::{Event, Waitable, wait};
///
/// let (a, b) = (Event::new(), Event::new());
/// let b2 = b.clone();
/// verdant_hub::spawn(move || b2.set());
/// let ready = wait(&[&a as &dyn Waitable, &b], Some(Duration::from_secs(30)), Some(1));
/// assert_eq!(ready, [1]);
/// ```
pub fn wait(
    objects: &[&dyn Waitable],
    timeout: Option<Duration>,
    count: Option<usize>,
) -> Vec<usize> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let wanted = count.unwrap_or(objects.len()).min(objects.len());
    let ready = |i: &usize| objects[*i].is_ready();
    // Objects made ready on other threads (thread-pool results) are why `park::wait_until`
    // looks again after registering.
    park::wait_until(
        &"wait() on several objects",
        deadline,
        |waker| {
            for object in objects.iter().filter(|o| !o.is_ready()) {
                object.add_waiter(waker.clone());
            }
        },
        || (0..objects.len()).filter(ready).count() >= wanted,
    );
    (0..objects.len()).filter(ready).collect()
}

/// Yields the index of each object as it becomes ready, until all have been yielded or
/// `timeout` (for the whole iteration) passes. Objects that become ready at the same time
/// come out in index order.
///
/// ```
/// use verdant_sync::{Event, Waitable, iwait};
///
/// let go = Event::new();
/// let slow = verdant_hub::spawn({
///     let go = go.clone();
///     move || go.wait() // finishes only once `go` is set
/// });
/// let fast = verdant_hub::spawn(|| ());
/// let mut order = Vec::new();
/// for i in iwait(&[&slow as &dyn Waitable, &fast], None) {
///     order.push(i);
///     go.set(); // `fast` came first; now let `slow` finish
/// }
/// assert_eq!(order, [1, 0]);
/// ```
pub fn iwait<'a>(objects: &'a [&'a dyn Waitable], timeout: Option<Duration>) -> IWait<'a> {
    IWait {
        objects,
        yielded: vec![false; objects.len()],
        deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
    }
}

/// The iterator of [`iwait`].
#[derive(Debug)]
pub struct IWait<'a> {
    objects: &'a [&'a dyn Waitable],
    yielded: Vec<bool>,
    deadline: Option<Instant>,
}

impl std::fmt::Debug for dyn Waitable + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waitable").field("ready", &self.is_ready()).finish()
    }
}

impl Iterator for IWait<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let pending: Vec<usize> = (0..self.objects.len()).filter(|&i| !self.yielded[i]).collect();
        if pending.is_empty() {
            return None;
        }
        let objects = self.objects;
        let mut found = None;
        // As in `wait`: `park::wait_until` looks again after registering, before parking.
        park::wait_until(
            &"iwait() on several objects",
            self.deadline,
            |waker| pending.iter().for_each(|&i| objects[i].add_waiter(waker.clone())),
            || {
                found = pending.iter().copied().find(|&i| objects[i].is_ready());
                found.is_some()
            },
        );
        let ready = found?;
        self.yielded[ready] = true;
        Some(ready)
    }
}
