//! A greenlet's stack overflow ends that greenlet, not the process; the overflows that
//! cannot be ended alone still abort, naming the greenlet.
//!
//! Every overflow happens in a child process (`*_child` tests, run by the test named after
//! them), so a regression cannot take the suite down. No assertion depends on timing: the
//! order of events comes from the hub's FIFO scheduling, events and joins.

use verdant_testutil as util;

use std::cell::Cell;
use std::rc::Rc;

use util::{DropCounter, Log};
use verdant_hub::{self as hub, Builder, Greenlet, GreenletError, StackMode, WaitFor};
use verdant_hub::{configure, joinall, joinall_raising, spawn, yield_now};
use verdant_sync::Event;

/// The stack the overflowing greenlets get: small, so that recursing through it is quick.
const STACK: usize = 32 * 1024;

fn overflow_error(name: &str, id: u64) -> GreenletError {
    GreenletError::StackOverflow { name: Some(name.to_string()), id, stack_size: STACK }
}

/// Resident memory of this process, from `/proc/self/statm` (its second field, in pages).
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no memory-safety preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize
}

/// `overflows` greenlets overflow one after another, each `get()` by the main code, while
/// 100 others count, yielding after every step, with a stack array they check at the end.
fn overflow_many_while_others_count(overflows: usize, rounds: u64, shared: bool) {
    if shared {
        configure(|c| {
            c.stack_mode = StackMode::Shared;
            c.stack_size = STACK;
            c.shared_stacks = 4;
        })
        .unwrap();
    }
    let count = Rc::new(Cell::new(0u64));
    let counters: Vec<Greenlet<u64>> = (0..100u64)
        .map(|i| {
            let count = count.clone();
            spawn(move || {
                let mine = std::hint::black_box([i; 32]);
                for _ in 0..rounds {
                    count.set(count.get() + 1);
                    yield_now();
                }
                assert_eq!(std::hint::black_box(mine), [i; 32], "its frames survived");
                i
            })
        })
        .collect();
    // A long name makes a greenlet that is never freed show up in the resident memory:
    // 16 KiB each, so 900 leaked ones would be 14 MiB.
    let pad = "x".repeat(16 * 1024);
    let warm_up = overflows / 10;
    let (mut resident_after_warm_up, mut count_half_way) = (0, 0);
    for i in 0..overflows {
        if i == warm_up {
            resident_after_warm_up = resident_bytes();
        }
        if i == overflows / 2 {
            count_half_way = count.get();
        }
        let name = format!("overflow #{i} {pad}");
        let builder = Builder::new().name(name.clone());
        // In shared mode an explicit size would mean a guarded stack of its own.
        let builder = if shared { builder } else { builder.stack_size(STACK) };
        let g = builder.spawn(|| util::recurse_forever(0)).unwrap();
        assert_eq!(g.get(), Err(overflow_error(&name, g.id())), "overflow #{i}");
    }
    let resident_at_end = resident_bytes();
    assert_eq!(joinall(&counters, WaitFor::all()).len(), 100);
    for (i, counter) in counters.iter().enumerate() {
        assert_eq!(counter.get(), Ok(i as u64), "counter {i} finished normally");
    }
    assert_eq!(count.get(), 100 * rounds, "every counter step ran");
    assert!(
        count_half_way > 0 && count_half_way < 100 * rounds,
        "the counters were going while the greenlets overflowed ({count_half_way})"
    );
    let stats = hub::stats();
    assert_eq!(stats.finished, stats.spawned, "every greenlet went through the finish path");
    // Shared stacks stay mapped (and count as in use) for the greenlets to come.
    let expected_in_use = if shared { stats.shared_stacks } else { 0 };
    assert_eq!(stats.stacks_in_use, expected_in_use, "every greenlet's stack went back");
    // After the warm-up (stack pool, allocator arenas, the shared-stack save arena at
    // their working size) nothing grows per overflow: a stack not recycled would cost
    // its 32 KiB, a greenlet not freed its 16 KiB name. 4 MiB leaves room for allocator
    // noise and is well under the 14 MiB that either leak would add.
    let growth = resident_at_end.saturating_sub(resident_after_warm_up);
    assert!(growth < 4 << 20, "resident memory grew by {growth} bytes after the warm-up");
    println!("resident memory grew by {growth} bytes over {} overflows", overflows - warm_up);
}

/// Run in a child process by `a_thousand_overflows_leave_the_process_and_others_running`.
#[test]
fn many_overflows_child() {
    if !util::is_child_for("many_overflows_child") {
        return;
    }
    overflow_many_while_others_count(1000, 2000, false);
    // The overflowing greenlets took turns on one recycled stack, so every overflow after
    // the first was caught by a guard page that had been hit before: it stays in place.
    assert!(hub::guarded_stacks_mapped() <= 101 + 1, "at most one stack per greenlet alive");
}

#[test]
fn a_thousand_overflows_leave_the_process_and_others_running() {
    util::assert_test_passes_in_child("many_overflows_child");
}

/// Run in a child process by `overflows_on_shared_stacks_end_only_their_greenlet`.
#[test]
fn many_shared_overflows_child() {
    if !util::is_child_for("many_shared_overflows_child") {
        return;
    }
    overflow_many_while_others_count(300, 600, true);
    assert_eq!(hub::stats().shared_stacks, 4);
}

#[test]
fn overflows_on_shared_stacks_end_only_their_greenlet() {
    util::assert_test_passes_in_child("many_shared_overflows_child");
}

/// Run in a child process by `joiners_and_links_see_the_overflow`.
#[test]
fn joiners_and_links_child() {
    if !util::is_child_for("joiners_and_links_child") {
        return;
    }
    let log = Log::new();
    let go = Event::new();
    let drops = DropCounter::new();
    let token = drops.token();
    let gate = go.clone();
    let g = Builder::new()
        .name("linked")
        .stack_size(STACK)
        .spawn(move || {
            let _held = token; // on the frames that overflow: never dropped
            gate.wait();
            util::recurse_forever(0)
        })
        .unwrap();
    let expected = overflow_error("linked", g.id());

    let l = log.clone();
    g.link(move |g| {
        l.push(format!("link: {}", g.get().unwrap_err() == overflow_error("linked", g.id())))
    });
    let (l, id) = (log.clone(), g.id());
    g.link_exception(move |_| {
        // Links run in the dying greenlet's own context, and may block there.
        l.push(format!("link_exception in its context: {}", hub::current().id() == id));
        yield_now();
        l.push("link_exception after a yield");
    });
    let l = log.clone();
    g.link_value(move |_| l.push("link_value (must not run)"));
    let l = log.clone();
    g.as_ref().link(move |g| l.push(format!("untyped link: {:?}", g.error().is_some())));

    let (l, joined) = (log.clone(), g.clone());
    let joiner = spawn(move || {
        joined.join();
        l.push("joiner: join returned");
    });
    let got = g.clone();
    let getter = spawn(move || got.get());
    let raised = g.clone();
    let raiser = spawn(move || joinall_raising(&[&raised], WaitFor::all()));
    yield_now(); // the three wait now, and `g` waits for `go`
    assert!(!g.ready());
    go.set();

    assert_eq!(getter.get(), Ok(Err(expected.clone())), "get() in another greenlet");
    assert_eq!(raiser.get(), Ok(Err(expected.clone())), "joinall_raising");
    joiner.join();
    assert_eq!(g.get(), Err(expected.clone()));
    assert_eq!(g.error(), Some(expected));
    assert!(g.ready() && !g.successful());
    assert_eq!(drops.dropped(), 0, "destructors of the overflowed frames did not run");
    assert_eq!(
        log.take(),
        [
            "link: true",
            "link_exception in its context: true",
            // Joiners were woken before the links ran: the joiner runs during the yield.
            "joiner: join returned",
            "link_exception after a yield",
            "untyped link: true",
        ]
    );
}

#[test]
fn joiners_and_links_see_the_overflow() {
    util::assert_test_passes_in_child("joiners_and_links_child");
}

/// Run in a child process by `a_link_callback_that_overflows_ends_alone_and_the_rest_run`.
#[test]
fn link_overflow_child() {
    if !util::is_child_for("link_overflow_child") {
        return;
    }
    let log = Log::new();
    let g = Builder::new().name("fine").stack_size(STACK).spawn(|| 5).unwrap();
    g.link(|_| {
        util::recurse_forever(0);
    });
    let l = log.clone();
    g.link(move |g| l.push(format!("second link sees {:?}", g.get())));
    assert_eq!(g.get(), Ok(5), "the outcome stands: the body had returned");
    assert_eq!(log.take(), ["second link sees Ok(5)"]);
    assert_eq!(hub::stats().stacks_in_use, 0);
}

#[test]
fn a_link_callback_that_overflows_ends_alone_and_the_rest_run() {
    util::assert_test_passes_in_child("link_overflow_child");
}

/// Run in a child process by `an_overflow_in_the_links_of_an_overflowed_greenlet_aborts`.
#[test]
fn overflow_twice_child() {
    if !util::is_child_for("overflow_twice_child") {
        return;
    }
    let g =
        Builder::new().name("twice").stack_size(STACK).spawn(|| util::recurse_forever(0)).unwrap();
    g.link(|_| {
        util::recurse_forever(0);
    });
    let _ = g.get();
    unreachable!("a second overflow of the same greenlet aborts");
}

#[test]
fn an_overflow_in_the_links_of_an_overflowed_greenlet_aborts() {
    let (stderr, signal) = util::run_test_in_child("overflow_twice_child");
    assert!(stderr.contains("verdant: greenlet 'twice' (id "), "{stderr}");
    assert!(stderr.contains("it overflowed again"), "{stderr}");
    assert_eq!(signal, Some(libc::SIGABRT));
}

/// Run in a child process by `an_overflow_under_block_on_still_aborts`.
#[test]
fn block_on_overflow_child() {
    if !util::is_child_for("block_on_overflow_child") {
        return;
    }
    let g = Builder::new()
        .name("async")
        .stack_size(STACK)
        .spawn(|| hub::block_on(async { util::recurse_forever(0) }))
        .unwrap();
    let _ = g.get();
    unreachable!("an overflow under a pinned future aborts");
}

#[test]
fn an_overflow_under_block_on_still_aborts() {
    let (stderr, signal) = util::run_test_in_child("block_on_overflow_child");
    assert!(
        stderr.contains("verdant: greenlet 'async' (id ")
            && stderr.contains("overflowed its stack of 32 KiB")
            && stderr.contains("pinned future"),
        "{stderr}"
    );
    assert_eq!(signal, Some(libc::SIGABRT));
}

/// Run in a child process by `an_overflow_of_a_threads_own_stack_still_aborts`.
#[test]
fn thread_overflow_child() {
    if !util::is_child_for("thread_overflow_child") {
        return;
    }
    // The hub and its handler exist, and a greenlet's guard page was published last.
    assert_eq!(spawn(|| 1).get(), Ok(1));
    util::recurse_forever(0);
    unreachable!("an overflow of the thread's own stack aborts");
}

#[test]
fn an_overflow_of_a_threads_own_stack_still_aborts() {
    let (stderr, signal) = util::run_test_in_child("thread_overflow_child");
    assert!(
        signal == Some(libc::SIGABRT) || signal == Some(libc::SIGSEGV),
        "ended by {signal:?}: {stderr}"
    );
    assert!(stderr.contains("has overflowed its stack"), "the runtime's report: {stderr}");
    assert!(!stderr.contains("verdant: greenlet"), "not taken for a greenlet's: {stderr}");
}

/// The lowest usable address of the stack mapping that holds `address` (just above its
/// guard page), from `/proc/self/maps`.
fn mapping_low(address: usize) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|line| {
            let (low, high) = line.split_whitespace().next()?.split_once('-')?;
            Some((usize::from_str_radix(low, 16).ok()?, usize::from_str_radix(high, 16).ok()?))
        })
        .find(|&(low, high)| (low..high).contains(&address))
        .expect("the stack is mapped")
        .0
}

/// Recurses until fewer than 512 bytes of stack are left above `low`, then calls into the
/// C library, whose frames overflow there.
#[inline(never)]
fn descend_into_c(low: usize) -> usize {
    let here = std::hint::black_box(0u8);
    let sp = &here as *const u8 as usize;
    if sp > low + 512 {
        return descend_into_c(low) + std::hint::black_box(here) as usize;
    }
    let mut buffer = [0u8; 64];
    // SAFETY: the format takes one `c_double`, and `buffer` holds the 64 bytes it may write.
    let written =
        unsafe { libc::snprintf(buffer.as_mut_ptr().cast(), buffer.len(), c"%f".as_ptr(), 1.5f64) };
    written as usize
}

/// Run in a child process by `an_overflow_inside_c_code_still_aborts`.
#[test]
fn c_overflow_child() {
    if !util::is_child_for("c_overflow_child") {
        return;
    }
    let g = Builder::new()
        .name("in C")
        .stack_size(STACK)
        .spawn(|| {
            let top = std::hint::black_box(0u8);
            descend_into_c(mapping_low(&top as *const u8 as usize))
        })
        .unwrap();
    let _ = g.get();
    unreachable!("an overflow inside C code aborts");
}

#[test]
fn an_overflow_inside_c_code_still_aborts() {
    let (stderr, signal) = util::run_test_in_child("c_overflow_child");
    assert!(
        stderr.contains("verdant: greenlet 'in C' (id ")
            && stderr.contains("came from code outside this program's own"),
        "{stderr}"
    );
    assert_eq!(signal, Some(libc::SIGABRT));
}
