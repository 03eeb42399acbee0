//! StackMode::Shared: greenlets take turns on a few stacks; their frames survive swaps.

use verdant_testutil as util;

use std::time::Duration;

use util::{DropCounter, Log};
use verdant_hub::{self as hub, StackMode, configure, park};
use verdant_hub::{Builder, GreenletError, sleep, spawn, yield_now};

fn shared(stacks: usize) {
    configure(|c| {
        c.stack_mode = StackMode::Shared;
        c.shared_stacks = stacks;
    })
    .unwrap();
}

/// Recurses `depth` levels with a stack-local array in every frame, yields at the bottom
/// (so other greenlets run on the same stack meanwhile), and checks every frame's array on
/// the way back up.
fn frames_survive_yields(seed: u64, depth: u32) -> u64 {
    let local = std::hint::black_box([seed.wrapping_mul(depth as u64 + 1); 16]);
    let below = if depth == 0 {
        yield_now();
        sleep(Duration::from_millis(1));
        yield_now();
        seed
    } else {
        frames_survive_yields(seed, depth - 1)
    };
    assert!(local.iter().all(|&v| v == seed.wrapping_mul(depth as u64 + 1)), "a frame changed");
    below.wrapping_add(local[depth as usize % 16])
}

fn expected(seed: u64, depth: u32) -> u64 {
    (0..=depth).fold(seed, |acc, d| acc.wrapping_add(seed.wrapping_mul(d as u64 + 1)))
}

#[test]
fn frames_survive_being_swapped_out_by_greenlets_on_the_same_stack() {
    shared(2);
    let gs: Vec<_> = (0..40u64)
        .map(|seed| spawn(move || frames_survive_yields(seed + 1, 20 + (seed % 7) as u32)))
        .collect();
    for (seed, g) in gs.iter().enumerate() {
        let seed = seed as u64;
        assert_eq!(g.get(), Ok(expected(seed + 1, 20 + (seed % 7) as u32)));
    }
    let stats = hub::stats();
    assert_eq!(stats.shared_stacks, 2);
    assert!(
        stats.shared_bytes_copied > 40 * 1000,
        "frames were copied: {}",
        stats.shared_bytes_copied
    );
    assert_eq!(stats.stacks_in_use, 2, "only the two shared stacks are mapped");
}

#[test]
fn a_hundred_thousand_idle_greenlets_fit() {
    shared(16);
    let release = std::rc::Rc::new((std::cell::Cell::new(false), park::WaitList::new()));
    let gs: Vec<_> = (0..100_000u32)
        .map(|i| {
            let release = release.clone();
            spawn(move || {
                while !release.0.get() {
                    release.1.push(park::waker());
                    park::park(&"the release");
                }
                i
            })
        })
        .collect();
    yield_now(); // every greenlet starts and parks
    let stats = hub::stats();
    assert_eq!(stats.stacks_in_use, 16, "100,000 parked greenlets on 16 stacks");
    release.0.set(true);
    assert_eq!(release.1.notify_all(), 100_000);
    let sum: u64 = gs.iter().map(|g| g.get().unwrap() as u64).sum();
    assert_eq!(sum, 99_999 * 100_000 / 2);
}

#[test]
fn kills_and_panics_unwind_across_swaps() {
    shared(1);
    let drops = DropCounter::new();
    let log = Log::new();
    let sleepers: Vec<_> = (0..5)
        .map(|i| {
            let (token, log) = (drops.token(), log.clone());
            spawn(move || {
                let _t = token;
                log.push(format!("start {i}"));
                sleep(Duration::from_secs(60));
            })
        })
        .collect();
    let t = drops.token();
    let panicker = spawn(move || {
        let _t = t;
        yield_now();
        panic!("on a shared stack");
    });
    yield_now();
    assert_eq!(log.len(), 5);
    verdant_hub::killall(&sleepers);
    assert_eq!(panicker.get(), Err(GreenletError::Panicked("on a shared stack".into())));
    assert_eq!(drops.dropped(), 6, "every destructor ran");
    assert!(sleepers.iter().all(|g| g.error() == Some(GreenletError::Killed)));
}

#[test]
fn an_explicit_stack_size_gets_a_guarded_stack_of_its_own() {
    shared(1);
    let a = spawn(|| sleep(Duration::from_millis(5)));
    let b = Builder::new().stack_size(64 * 1024).spawn(|| sleep(Duration::from_millis(5))).unwrap();
    yield_now();
    let stats = hub::stats();
    assert_eq!(stats.shared_stacks, 1);
    assert_eq!(stats.stacks_in_use, 2, "one shared stack plus b's own");
    a.join();
    b.join();
}

/// Run in a child process by `an_overflow_on_a_shared_stack_ends_only_its_greenlet`.
#[test]
fn shared_overflow_child() {
    if !util::is_child_for("shared_overflow_child") {
        return;
    }
    configure(|c| {
        c.stack_mode = StackMode::Shared;
        c.stack_size = 32 * 1024;
        c.shared_stacks = 1;
    })
    .unwrap();
    // Bound to the same shared stack: its frames are swapped out while the other
    // overflows, and must come back intact.
    let idle = spawn(|| frames_survive_yields(7, 8));
    yield_now();
    let deep = spawn(|| util::recurse_forever(0));
    // Greenlet ids count up from 1 in the child's fresh hub: `idle` is 1, the recursing
    // (unnamed) greenlet 2.
    let err = deep.get().unwrap_err();
    assert_eq!(err, GreenletError::StackOverflow { name: None, id: 2, stack_size: 32 * 1024 });
    assert!(err.to_string().starts_with("greenlet 2 overflowed its stack of 32 KiB"), "{err}");
    assert_eq!(idle.get(), Ok(expected(7, 8)), "the greenlet sharing its stack is unharmed");
    assert_eq!(spawn(|| 3).get(), Ok(3), "and the shared stack takes new greenlets");
}

#[test]
fn an_overflow_on_a_shared_stack_ends_only_its_greenlet() {
    util::assert_test_passes_in_child("shared_overflow_child");
}

/// Where `block_on` keeps the future it polls: the future's address, and a local's on the
/// polling greenlet's stack.
fn block_on_addresses() -> (usize, usize) {
    let local = std::hint::black_box(0u8);
    let local_at = std::ptr::from_ref(&local) as usize;
    let future_at = hub::block_on(std::future::poll_fn({
        let marker = std::hint::black_box([0u8; 8]);
        move |_| std::task::Poll::Ready(std::ptr::from_ref(&marker) as usize)
    }));
    (future_at, local_at)
}

#[test]
fn block_on_keeps_its_future_off_a_shared_stack() {
    // Another thread may hold a pinned future's address (an intrusive waiter list) while
    // its greenlet is swapped out, when the shared stack holds other greenlets' frames.
    let near = |(future, local): (usize, usize)| future.abs_diff(local) < hub::DEFAULT_STACK_SIZE;
    let guarded = Builder::new().stack_size(hub::DEFAULT_STACK_SIZE).spawn(block_on_addresses);
    assert!(near(guarded.unwrap().get().unwrap()), "on a guarded stack it is pinned in place");
    shared(2);
    let on_shared = spawn(block_on_addresses).get().unwrap();
    assert!(!near(on_shared), "on a shared stack it lives on the heap: {on_shared:x?}");
}

/// A greenlet on a shared stack gets the stack size configured when it starts, also after
/// shared stacks of another size were mapped.
#[test]
fn a_larger_stack_size_configured_later_applies_to_new_shared_greenlets() {
    shared(2);
    let small = spawn(|| hub::stats().shared_stacks);
    assert_eq!(small.get(), Ok(1), "one shared stack of the default size");
    configure(|c| c.stack_size = 2 * 1024 * 1024).unwrap();
    // ~600 KiB of frames: overflows the default 256 KiB, fits 2 MiB.
    fn recurse(n: u32) -> u32 {
        let pad = std::hint::black_box([n as u8; 4096]);
        if n == 0 { pad[0] as u32 } else { recurse(n - 1) + pad[1] as u32 }
    }
    let deep = spawn(|| recurse(150));
    assert!(deep.get().is_ok(), "{:?}", deep.get());
    assert_eq!(hub::stats().shared_stacks, 2, "a shared stack of the new size was mapped");
}
