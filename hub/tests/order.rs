//! Scheduling order: spawn, FIFO, yield_now, timers, and I/O versus busy greenlets.

use verdant_testutil as util;

use std::cell::Cell;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use util::Log;
use verdant_hub as hub;
use verdant_hub::WaitFor;
use verdant_hub::{sleep, spawn, spawn_later, yield_now};

#[test]
fn spawned_greenlets_wait_for_the_spawner_to_block_then_run_fifo() {
    let log = Log::new();
    let gs: Vec<_> = (0..5)
        .map(|i| {
            let log = log.clone();
            spawn(move || log.push(format!("g{i}")))
        })
        .collect();
    log.push("spawner still running");
    assert_eq!(log.len(), 1, "nothing ran before the spawner blocked");
    verdant_hub::joinall(&gs, WaitFor::all());
    assert_eq!(log.take(), ["spawner still running", "g0", "g1", "g2", "g3", "g4"]);
}

#[test]
fn yield_now_lets_every_ready_greenlet_run_once_before_returning() {
    let log = Log::new();
    let spin = |name: &'static str, rounds: usize, log: Log| {
        spawn(move || {
            for round in 0..rounds {
                log.push(format!("{name}{round}"));
                yield_now();
            }
        })
    };
    let a = spin("a", 3, log.clone());
    let b = spin("b", 3, log.clone());
    let c = spin("c", 3, log.clone());
    verdant_hub::joinall(&[a, b, c], WaitFor::all());
    assert_eq!(log.take(), ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]);
}

#[test]
fn yield_now_from_main_runs_each_ready_greenlet_exactly_once() {
    let log = Log::new();
    for i in 0..3 {
        let log = log.clone();
        spawn(move || {
            loop {
                log.push(format!("g{i}"));
                yield_now();
            }
        });
    }
    yield_now();
    log.push("main");
    yield_now();
    log.push("main");
    assert_eq!(log.take(), ["g0", "g1", "g2", "main", "g0", "g1", "g2", "main"]);
}

#[test]
fn greenlets_spawned_during_a_turn_run_after_those_already_ready() {
    let log = Log::new();
    let l = log.clone();
    let parent = spawn(move || {
        let l2 = l.clone();
        let child = spawn(move || l2.push("child"));
        l.push("parent after spawn");
        child
    });
    let l = log.clone();
    let sibling = spawn(move || l.push("sibling"));
    let child = parent.get().unwrap();
    verdant_hub::joinall(&[child.as_ref(), sibling.as_ref()], WaitFor::all());
    assert_eq!(log.take(), ["parent after spawn", "sibling", "child"]);
}

#[test]
fn timers_fire_in_deadline_order_fifo_on_ties() {
    // Created in an order different from their deadlines; two pairs share a deadline.
    let plan = [(20, "late-1"), (0, "early-1"), (10, "mid"), (20, "late-2"), (0, "early-2")];
    // The deadlines are absolute, so the order is only tested if every greenlet registered
    // its timer before the earliest deadline: a deadline already past when `sleep_until`
    // is called returns at once, without a timer. Whether that happened is counted, not
    // timed (`timers_fired`); on a stalled machine the attempt is repeated with more margin.
    for margin_ms in [30, 100, 300, 1000, 3000] {
        let log = Log::new();
        let base = Instant::now() + Duration::from_millis(margin_ms);
        let fired_before = hub::stats().timers_fired;
        let gs: Vec<_> = plan
            .iter()
            .map(|&(offset, name)| {
                let log = log.clone();
                spawn(move || {
                    verdant_hub::sleep_until(base + Duration::from_millis(offset));
                    log.push(name);
                })
            })
            .collect();
        verdant_hub::joinall(&gs, WaitFor::all());
        if hub::stats().timers_fired - fired_before < plan.len() as u64 {
            continue; // some deadline passed before its timer existed: inconclusive
        }
        assert_eq!(log.take(), ["early-1", "early-2", "mid", "late-1", "late-2"]);
        return;
    }
    panic!("no attempt registered all five timers before their deadlines, even 3 s ahead");
}

#[test]
fn spawn_later_starts_after_the_delay() {
    let started = Instant::now();
    let g = spawn_later(Duration::from_millis(30), move || started.elapsed());
    let waited = g.get().unwrap();
    assert!(waited >= Duration::from_millis(30), "started after {waited:?}");
}

#[test]
fn sleep_never_wakes_early() {
    for ms in [1, 5, 20] {
        let t = Instant::now();
        sleep(Duration::from_millis(ms));
        assert!(t.elapsed() >= Duration::from_millis(ms));
    }
}

#[test]
fn the_loop_never_blocks_in_poll_while_a_greenlet_is_ready() {
    // One greenlet waits on a socket nobody writes to, and a far timer is pending: if the
    // loop ever blocked in poll between the busy greenlet's yields, it would count it.
    let (_keep, quiet) = UnixStream::pair().unwrap();
    quiet.set_nonblocking(true).unwrap();
    let waiter =
        spawn(move || verdant_hub::io::wait_readable(&quiet, Some(Duration::from_secs(30))));
    let far = spawn(|| sleep(Duration::from_secs(30)));
    yield_now(); // let both park
    let before = hub::stats();
    let busy = spawn(|| {
        for _ in 0..1000 {
            yield_now();
        }
    });
    busy.join();
    let after = hub::stats();
    assert_eq!(after.polls_blocking, before.polls_blocking, "a blocking poll happened");
    assert!(
        after.polls_nonblocking - before.polls_nonblocking >= 1000,
        "I/O is still polled (without blocking) between turns: {} polls",
        after.polls_nonblocking - before.polls_nonblocking
    );
    waiter.kill();
    far.kill();
}

#[test]
fn a_busy_greenlet_does_not_starve_io_and_io_does_not_starve_it() {
    let (mut writer, reader) = UnixStream::pair().unwrap();
    reader.set_nonblocking(true).unwrap();
    let got_io = Rc::new(Cell::new(false));
    let flag = got_io.clone();
    let io_waiter = spawn(move || {
        verdant_hub::io::wait_readable(&reader, Some(Duration::from_secs(30))).unwrap();
        flag.set(true);
    });
    // The writer thread says when its data is in the socket. From then on, the turns the
    // spinner counts are turns in which the data was waiting: the hub polls I/O at every
    // turn boundary, so the waiter must run within a couple of them, however long the
    // writer thread took to be scheduled.
    let written = Arc::new(AtomicBool::new(false));
    let spins = Rc::new(Cell::new(0u64));
    let spins_after_write = Rc::new(Cell::new(0u64));
    let spinner = spawn({
        let (seen, written) = (got_io.clone(), written.clone());
        let (spins, after) = (spins.clone(), spins_after_write.clone());
        move || {
            while !seen.get() {
                spins.set(spins.get() + 1);
                if written.load(Ordering::SeqCst) {
                    after.set(after.get() + 1);
                    assert!(after.get() < 1000, "the I/O waiter was starved");
                }
                yield_now();
            }
        }
    });
    yield_now();
    let t = std::thread::spawn({
        let written = written.clone();
        move || {
            writer.write_all(b"ping").unwrap();
            written.store(true, Ordering::SeqCst);
        }
    });
    spinner.join();
    io_waiter.join();
    t.join().unwrap();
    assert!(got_io.get());
    assert!(spins.get() > 0, "the spinner ran while I/O was awaited");
    assert!(spins_after_write.get() <= 3, "{} turns with data waiting", spins_after_write.get());
}
