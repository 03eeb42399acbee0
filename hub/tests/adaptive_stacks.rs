//! The default stack mode past the process's guarded-stack cap: more greenlets than
//! `vm.max_map_count` allows guarded stacks for all start, park and finish, with no
//! setting. A binary of its own: the cap is process-wide, so no other test may hold
//! stacks meanwhile.

use std::cell::Cell;
use std::rc::Rc;

use verdant_hub::{self as hub, HubStats, StackMode, park, spawn, yield_now};

/// Spawns `count` greenlets that each count themselves started and wait for the release;
/// checks all started, lets `check` look at the hub while they wait, then releases them
/// and checks each finished once with its own value.
fn crowd(count: usize, check: impl FnOnce(HubStats)) {
    let release = Rc::new((Cell::new(false), park::WaitList::new()));
    let started = Rc::new(Cell::new(0usize));
    let greenlets: Vec<_> = (0..count)
        .map(|i| {
            let (release, started) = (release.clone(), started.clone());
            spawn(move || {
                started.set(started.get() + 1);
                release.1.wait_until(&"the release", None, || release.0.get());
                i
            })
        })
        .collect();
    yield_now(); // every greenlet starts and parks
    assert_eq!(started.get(), count, "all {count} started");
    check(hub::stats());
    release.0.set(true);
    release.1.notify_all();
    let sum: usize = greenlets.iter().map(|g| g.get().unwrap()).sum();
    assert_eq!(sum, count * (count - 1) / 2, "each finished once with its own value");
}

#[test]
fn more_greenlets_than_guarded_stacks_allow_run_with_no_setting() {
    assert_eq!(hub::config().stack_mode, StackMode::Adaptive);
    let cap = hub::process_stack_limit();
    let per_hub = hub::config().adaptive_guarded;
    crowd(cap + 8_000, |stats| {
        assert!(stats.shared_stacks > 0, "the rest went on shared stacks");
        let guarded = stats.stacks_in_use - stats.shared_stacks;
        assert_eq!(guarded, per_hub, "guarded stacks while fewer than adaptive_guarded");
    });

    // Without the per-hub bound, the process-wide cap is the one that switches over, and
    // it leaves headroom for a greenlet that asks for a stack of its own.
    hub::configure(|c| c.adaptive_guarded = usize::MAX).unwrap();
    let mut own = None;
    crowd(cap + 8_000, |stats| {
        let guarded = stats.stacks_in_use - stats.shared_stacks;
        assert!(guarded < cap, "{guarded} guarded stacks, under the cap of {cap}");
        assert!(guarded >= cap / 2, "guarded stacks were used while they lasted: {guarded}");
        own = Some(hub::Builder::new().stack_size(64 * 1024).spawn(|| "own stack").unwrap());
    });
    assert_eq!(own.unwrap().get(), Ok("own stack"));
}
