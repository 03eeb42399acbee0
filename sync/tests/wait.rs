//! wait and iwait over greenlets, events and async results.

use std::time::Duration;

use verdant_hub::{spawn, yield_now};
use verdant_sync::{AsyncResult, Event, WaitFor, Waitable, iwait, wait};

#[test]
fn wait_for_all_or_for_a_count() {
    // The order comes from the hub's FIFO rules, not from sleeps: the setter sets the
    // async result (waking main first), then yields behind main before setting the event;
    // the greenlet finishes only when main lets it.
    let release = Event::new();
    let r2 = release.clone();
    let g = spawn(move || r2.wait());
    let event = Event::new();
    let result: AsyncResult<u8> = AsyncResult::new();
    let (e, r) = (event.clone(), result.clone());
    spawn(move || {
        r.set(1);
        yield_now();
        e.set();
    });
    let objects: [&dyn Waitable; 3] = [&g, &event, &result];
    assert_eq!(wait(&objects, WaitFor::any()), [2], "the async result came first");
    release.set();
    // In the order they became ready: the async result first; the other two both while
    // main was parked, so in index order.
    assert_eq!(wait(&objects, WaitFor::all()), [2, 0, 1]);
}

#[test]
fn wait_returns_what_is_ready_when_the_timeout_passes() {
    let never = Event::new();
    let done = spawn(|| ());
    let objects: [&dyn Waitable; 2] = [&never, &done];
    assert_eq!(wait(&objects, WaitFor::all().timeout(Duration::from_millis(5))), [1]);
}

#[test]
fn iwait_yields_in_completion_order_and_stops_at_the_timeout() {
    // Each greenlet finishes when its gate opens; main opens the next gate only after
    // iwait yielded the previous greenlet, so the order does not depend on timing.
    let gates: Vec<Event> = (0..3).map(|_| Event::new()).collect();
    let gs: Vec<_> = gates
        .iter()
        .map(|gate| {
            let gate = gate.clone();
            spawn(move || gate.wait())
        })
        .collect();
    let objects: Vec<&dyn Waitable> = gs.iter().map(|g| g as &dyn Waitable).collect();
    let next_gate = |i: usize| [None, Some(2), Some(0)][i];
    gates[1].set();
    let mut order = Vec::new();
    for i in iwait(&objects, WaitFor::all()) {
        order.push(i);
        if let Some(next) = next_gate(i) {
            gates[next].set();
        }
    }
    assert_eq!(order, [1, 2, 0]);

    let never = Event::new();
    let soon = Event::new();
    let s = soon.clone();
    spawn(move || s.set());
    yield_now();
    let objects: [&dyn Waitable; 2] = [&never, &soon];
    assert_eq!(
        iwait(&objects, WaitFor::all().timeout(Duration::from_millis(5))).collect::<Vec<_>>(),
        [1]
    );
}

/// An object that becomes ready right after its first check and never notifies anyone:
/// what a thread-pool result looks like when it completes between `wait`'s readiness check
/// and its registration (regression: `wait` parked forever).
struct ReadyAfterFirstLook(std::cell::Cell<u32>);

impl Waitable for ReadyAfterFirstLook {
    fn is_ready(&self) -> bool {
        let looks = self.0.get();
        self.0.set(looks + 1);
        looks > 0
    }

    fn add_waiter(&self, _waker: verdant_hub::park::Waker) {}
}

#[test]
fn a_completion_between_the_check_and_the_registration_is_not_missed() {
    let racy = ReadyAfterFirstLook(std::cell::Cell::new(0));
    assert_eq!(wait(&[&racy as &dyn Waitable], WaitFor::all()), [0]);
    let racy = ReadyAfterFirstLook(std::cell::Cell::new(0));
    assert_eq!(iwait(&[&racy as &dyn Waitable], WaitFor::all()).collect::<Vec<_>>(), [0]);
}
