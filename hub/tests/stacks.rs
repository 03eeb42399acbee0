//! Stacks: sizes, limits reported by name, lazy allocation, recycling, the adaptive
//! switch-over to shared stacks, an overflow that ends only its greenlet.

use verdant_testutil as util;

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use util::panic_message_of;
use verdant_hub::WaitFor;
use verdant_hub::{self as hub, StackMode, configure, park};
use verdant_hub::{Builder, GreenletError, sleep, spawn, yield_now};

#[test]
fn stack_sizes_out_of_range_are_rejected() {
    let err = Builder::new().stack_size(1024).spawn(|| ()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("16 KiB"), "{err}");
    assert!(configure(|c| c.stack_size = 2 << 30).is_err());
    assert_eq!(
        hub::config().stack_size,
        hub::DEFAULT_STACK_SIZE,
        "a failed configure changes nothing"
    );
}

#[test]
fn the_default_stack_size_is_documented_and_configurable() {
    assert_eq!(hub::DEFAULT_STACK_SIZE, 256 * 1024);
    configure(|c| c.stack_size = 64 * 1024 + 1).unwrap();
    assert_eq!(hub::config().stack_size % 4096, 0, "rounded up to pages");
    let deep = spawn(|| {
        // Uses ~40 KiB of stack in a release build: fits the configured 68 KiB. Debug
        // frames are several times larger, so a debug build recurses less deep.
        fn recurse(n: u32) -> u32 {
            let pad = std::hint::black_box([n as u8; 1024]);
            if n == 0 { pad[0] as u32 } else { recurse(n - 1) + pad[1] as u32 }
        }
        recurse(if cfg!(debug_assertions) { 10 } else { 40 })
    });
    assert!(deep.get().is_ok());
}

#[test]
fn exhausting_the_hub_limit_is_an_error_that_names_it() {
    configure(|c| {
        c.stack_mode = StackMode::Guarded;
        c.max_stacks = Some(3);
    })
    .unwrap();
    let sleepers: Vec<_> = (0..3).map(|_| spawn(|| sleep(Duration::from_millis(30)))).collect();
    yield_now(); // all three start and hold their stacks
    assert_eq!(hub::stats().stacks_in_use, 3);

    let err = Builder::new().spawn(|| ()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
    let text = err.to_string();
    assert!(text.contains("max_stacks setting is 3"), "{text}");
    assert!(text.contains("vm.max_map_count"), "{text}");

    let msg = panic_message_of(|| {
        spawn(|| ());
    });
    assert!(msg.starts_with("verdant::spawn: cannot allocate a greenlet stack"), "{msg}");
    assert!(msg.contains("vm.max_map_count"), "{msg}");

    verdant_hub::joinall(&sleepers, WaitFor::all());
    assert_eq!(spawn(|| 1).get(), Ok(1), "stacks came back to the free list");
}

#[test]
fn stacks_are_allocated_when_a_greenlet_first_runs_and_a_start_failure_is_reported() {
    configure(|c| {
        c.stack_mode = StackMode::Guarded;
        c.max_stacks = Some(2);
    })
    .unwrap();
    // Spawning needs no stack yet: all three are accepted...
    let gs: Vec<_> = (0..3).map(|_| spawn(|| sleep(Duration::from_millis(10)))).collect();
    // ...but only two can run at once; the third cannot start.
    verdant_hub::joinall(&gs, WaitFor::all());
    assert!(gs[0].successful() && gs[1].successful());
    match gs[2].get() {
        Err(GreenletError::NoStack(msg)) => assert!(msg.contains("vm.max_map_count"), "{msg}"),
        other => panic!("expected NoStack, got {other:?}"),
    }
    assert!(gs[2].get().unwrap_err().to_string().starts_with("could not start: "));
}

#[test]
fn builder_spawn_reserves_its_stack_at_once() {
    configure(|c| {
        c.stack_mode = StackMode::Guarded;
        c.max_stacks = Some(1);
    })
    .unwrap();
    let g = Builder::new().spawn(|| 1).unwrap();
    assert_eq!(hub::stats().stacks_in_use, 1, "reserved before it ran");
    assert!(Builder::new().spawn(|| 2).is_err());
    assert_eq!(g.get(), Ok(1));
    g.kill(); // killing a dead greenlet does nothing; the stack is back already
    let killed_early = Builder::new().spawn(|| 3).unwrap();
    killed_early.kill();
    assert_eq!(hub::stats().stacks_in_use, 0, "a reserved stack returns when killed before start");
}

/// Greenlets wait at it until it opens.
#[derive(Default)]
struct Gate {
    open: Cell<bool>,
    waiters: park::WaitList,
}

impl Gate {
    fn wait(&self) {
        self.waiters.wait_until(&"the gate", None, || self.open.get());
    }

    fn set(&self) {
        self.open.set(true);
        self.waiters.notify_all();
    }
}

#[test]
fn adaptive_is_the_default_and_shares_once_guarded_stacks_run_short() {
    assert_eq!(hub::config().stack_mode, StackMode::Adaptive);
    configure(|c| c.max_stacks = Some(4)).unwrap();
    let gate = Rc::new(Gate::default());
    let started = Rc::new(Cell::new(0));
    let parked: Vec<_> = (0..20)
        .map(|i| {
            let (gate, started) = (gate.clone(), started.clone());
            spawn(move || {
                started.set(started.get() + 1);
                gate.wait();
                i
            })
        })
        .collect();
    yield_now();
    assert_eq!(started.get(), 20, "every greenlet started although max_stacks is 4");
    let stats = hub::stats();
    assert_eq!(stats.shared_stacks, 1, "17 greenlets share one stack");
    assert_eq!(stats.stacks_in_use, 4, "three greenlets' own stacks and the shared one");

    // An explicit stack size still needs a guarded stack of its own, and names the limit.
    let err = Builder::new().stack_size(64 * 1024).spawn(|| ()).unwrap_err();
    assert!(err.to_string().contains("max_stacks setting is 4"), "{err}");

    gate.set();
    for (i, g) in parked.iter().enumerate() {
        assert_eq!(g.get(), Ok(i), "a greenlet on either kind of stack finishes");
    }
    let idle = hub::stats().stacks_in_use;
    assert_eq!(idle, 1, "only the shared stack stays mapped");
    // Guarded stacks are free again: the next greenlet takes one, not the shared stack.
    let runs_guarded = spawn(move || hub::stats().stacks_in_use - idle);
    assert_eq!(runs_guarded.get(), Ok(1));
}

#[test]
fn stacks_are_recycled_through_the_free_list() {
    let mapped_before = hub::guarded_stacks_mapped();
    for i in 0..2000 {
        assert_eq!(spawn(move || i).get(), Ok(i));
    }
    let stats = hub::stats();
    assert_eq!(stats.stacks_in_use, 0);
    assert_eq!(stats.stacks_free, 1, "one stack served all 2000 greenlets");
    // Other tests run in parallel threads; allow them some stacks of their own.
    assert!(hub::guarded_stacks_mapped() < mapped_before + 200);
}

#[test]
fn the_free_list_is_bounded() {
    configure(|c| c.max_free_stacks = 5).unwrap();
    let gs: Vec<_> = (0..20).map(|_| spawn(|| sleep(Duration::from_millis(1)))).collect();
    verdant_hub::joinall(&gs, WaitFor::all());
    assert_eq!(hub::stats().stacks_free, 5);
}

#[test]
fn the_process_cap_comes_from_vm_max_map_count() {
    let cap = hub::process_stack_limit();
    assert_eq!(cap, (hub::max_map_count() - 2048) / 2);
    if hub::max_map_count() == 65530 {
        assert!((31_000..32_768).contains(&cap), "{cap}");
    }
}

/// Run in a child process by `a_stack_overflow_ends_its_greenlet_by_name`.
#[test]
fn overflow_child() {
    if !util::is_child_for("overflow_child") {
        return;
    }
    let before = hub::stats();
    let g = Builder::new()
        .name("deep recursion")
        .stack_size(32 * 1024)
        .spawn(|| util::recurse_forever(0))
        .unwrap();
    let err = g.get().unwrap_err();
    assert_eq!(
        err,
        GreenletError::StackOverflow {
            name: Some("deep recursion".to_string()),
            id: g.id(),
            stack_size: 32 * 1024
        }
    );
    let text = err.to_string();
    assert!(text.starts_with(&format!("greenlet 'deep recursion' (id {}) overflowed", g.id())));
    assert!(text.contains("its stack of 32 KiB") && text.contains("Builder::stack_size"), "{text}");
    assert_eq!(g.error(), Some(err.clone()), "every handle sees the same outcome");
    assert_eq!(g.take(), Err(err), "take too");
    let after = hub::stats();
    assert_eq!(after.finished - before.finished, 1, "it went through the finish path once");
    assert_eq!(after.stacks_in_use, 0, "its stack went back to the pool");
    // The hub goes on: another greenlet runs, on the recycled stack.
    assert_eq!(Builder::new().stack_size(32 * 1024).spawn(|| 7).unwrap().get(), Ok(7));
}

#[test]
fn a_stack_overflow_ends_its_greenlet_by_name() {
    util::assert_test_passes_in_child("overflow_child");
}
