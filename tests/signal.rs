//! `verdant::signal`: handlers run as greenlets on the hub that registered them, waits
//! return the signal that came, several hubs each get the signals they listen to.
//!
//! Real signals are sent to this test process (`kill(getpid(), ..)`). Signals are
//! process-wide, so this binary holds only signal tests, each takes `SERIAL` and uses
//! signals of its own that no other test here uses. The portforwarder example runs in a
//! child process, which gets its `SIGTERM`.

#![allow(dead_code)] // the example's `main` is included but not called here

#[path = "../examples/support/echo.rs"]
mod echo;
#[path = "../examples/portforwarder.rs"]
mod portforwarder;

use std::cell::{Cell, RefCell};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::Duration;

use verdant::server::StreamServer;
use verdant::signal::{self, SIGCONT, SIGTERM, SIGURG, SIGUSR1, SIGUSR2, SIGWINCH};
use verdant::sync::Event;
use verdant_testutil as util;

/// One signal test at a time: each counts the deliveries it caused.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sends `signal` to this process, as another program would.
fn kill_self(signal: i32) {
    // SAFETY: kill(2) with our own pid touches no memory.
    assert_eq!(unsafe { libc::kill(libc::getpid(), signal) }, 0);
}

/// Runs until `count` reaches `n`: each handler greenlet sets `event` after counting.
fn wait_for(count: &Cell<usize>, event: &RefCell<Event>, n: usize) {
    while count.get() < n {
        let current = event.borrow().clone();
        current.wait();
        *event.borrow_mut() = Event::new();
    }
}

#[test]
fn handlers_run_in_order_as_new_greenlets_while_others_run() {
    let _serial = serial();
    let log = util::Log::new();
    let count = Rc::new(Cell::new(0));
    let arrived = Rc::new(RefCell::new(Event::new()));
    let hub_thread = std::thread::current().id();
    let handlers: Vec<_> = ["first", "second"]
        .into_iter()
        .map(|name| {
            let (log, count, arrived) = (log.clone(), count.clone(), arrived.clone());
            signal::handler(SIGUSR1, move || {
                assert!(verdant::in_greenlet(), "a handler runs in a greenlet");
                assert_eq!(std::thread::current().id(), hub_thread, "on the registering hub");
                verdant::sleep(Duration::from_millis(1)); // it may block
                log.push(name);
                count.set(count.get() + 1);
                arrived.borrow().set();
            })
            .unwrap()
        })
        .collect();
    // A greenlet keeps running (and yielding) the whole time.
    let ticks = Rc::new(Cell::new(0u64));
    let ticking = ticks.clone();
    let ticker = verdant::spawn(move || {
        loop {
            ticking.set(ticking.get() + 1);
            verdant::sleep(Duration::from_millis(1));
        }
    });
    for round in 1..=2 {
        verdant::spawn(|| kill_self(SIGUSR1));
        wait_for(&count, &arrived, 2 * round);
        assert_eq!(log.take(), ["first", "second"], "round {round}: in the order added");
    }
    assert_eq!(count.get(), 4, "each handler once per signal");
    assert!(ticks.get() > 0);
    ticker.kill();
    drop(handlers);
}

#[test]
fn dropping_a_handler_unregisters_it() {
    let _serial = serial();
    let dropped_calls = Rc::new(Cell::new(0));
    let kept_calls = Rc::new(Cell::new(0));
    let arrived = Rc::new(RefCell::new(Event::new()));
    let calls = dropped_calls.clone();
    let dropped = signal::handler(SIGUSR2, move || calls.set(calls.get() + 1)).unwrap();
    let (calls, seen) = (kept_calls.clone(), arrived.clone());
    let kept = signal::handler(SIGUSR2, move || {
        calls.set(calls.get() + 1);
        seen.borrow().set();
    })
    .unwrap();
    assert_eq!(dropped.signal(), SIGUSR2);
    dropped.cancel();
    kill_self(SIGUSR2);
    wait_for(&kept_calls, &arrived, 1);
    // Handlers of one delivery are spawned together, in order: had the dropped one still
    // been registered, it would have run before the kept one.
    assert_eq!(dropped_calls.get(), 0);
    drop(kept);
}

#[test]
fn wait_returns_the_signal_that_came() {
    let _serial = serial();
    let waiter = verdant::spawn(|| signal::wait(&[SIGURG, SIGWINCH]));
    verdant::yield_now(); // it subscribes: only later signals count
    kill_self(SIGWINCH);
    assert_eq!(waiter.take().unwrap().unwrap(), SIGWINCH);

    let waiter = verdant::spawn(|| signal::wait(&[SIGURG, SIGWINCH]));
    verdant::yield_now();
    kill_self(SIGURG);
    assert_eq!(waiter.take().unwrap().unwrap(), SIGURG);

    // The main code can wait too.
    verdant::spawn(|| kill_self(SIGWINCH));
    assert_eq!(signal::wait(&[SIGWINCH]).unwrap(), SIGWINCH);
    // Nothing comes: the timeout says so.
    assert_eq!(signal::wait_timeout(&[SIGURG], Duration::from_millis(1)).unwrap(), None);
}

#[test]
fn a_signal_before_the_wait_does_not_end_it() {
    let _serial = serial();
    let handled = Event::new();
    let seen = handled.clone();
    let handler = signal::handler(SIGCONT, move || seen.set()).unwrap(); // keeps the listener
    kill_self(SIGCONT);
    handled.wait(); // delivered: the dispatcher drained the pipe
    let waiter = verdant::spawn(|| signal::wait_timeout(&[SIGCONT], Duration::from_millis(5)));
    assert_eq!(waiter.take().unwrap().unwrap(), None, "the earlier signal does not count");
    drop(handler);
}

#[test]
fn each_hub_gets_the_signals_it_listens_to() {
    let _serial = serial();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<(&str, usize, usize)>();
    // Hub A listens to SIGUSR1; hub B to SIGUSR1 and SIGUSR2. Each ends after its last
    // expected signal and reports what it counted.
    let hub = |name: &'static str, signals: &'static [i32], expected: usize| {
        let (ready, done) = (ready_tx.clone(), done_tx.clone());
        std::thread::spawn(move || {
            let counts = Rc::new([Cell::new(0), Cell::new(0)]);
            let all_came = Event::new();
            let handlers: Vec<_> = signals
                .iter()
                .map(|&sig| {
                    let (counts, all_came) = (counts.clone(), all_came.clone());
                    signal::handler(sig, move || {
                        let slot = &counts[usize::from(sig == SIGUSR2)];
                        slot.set(slot.get() + 1);
                        if counts[0].get() + counts[1].get() == expected {
                            all_came.set();
                        }
                    })
                    .unwrap()
                })
                .collect();
            ready.send(()).unwrap();
            all_came.wait(); // the dispatchers keep this hub waiting for signals
            drop(handlers);
            done.send((name, counts[0].get(), counts[1].get())).unwrap();
        })
    };
    let a = hub("A", &[SIGUSR1], 1);
    let b = hub("B", &[SIGUSR1, SIGUSR2], 2);
    ready_rx.recv().unwrap();
    ready_rx.recv().unwrap();
    kill_self(SIGUSR2);
    kill_self(SIGUSR1);
    let mut reports = [done_rx.recv().unwrap(), done_rx.recv().unwrap()];
    reports.sort();
    assert_eq!(reports, [("A", 1, 0), ("B", 1, 1)], "(hub, SIGUSR1s, SIGUSR2s)");
    a.join().unwrap();
    b.join().unwrap();
}

#[test]
fn signals_that_cannot_be_handled_are_refused() {
    let _serial = serial();
    for bad in [libc::SIGKILL, libc::SIGSTOP, libc::SIGSEGV, 0, 12345] {
        let err = signal::handler(bad, || {}).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "signal {bad}: {err}");
    }
    let err = signal::wait(&[]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let err = signal::wait(&[libc::SIGKILL]).unwrap_err();
    assert!(err.to_string().contains("SIGKILL"), "{err}");
}

/// Run in a child process by `the_default_action_is_back_once_no_handler_is_left`.
#[test]
fn default_action_child() {
    if !util::is_child_for("default_action_child") {
        return;
    }
    let handler = signal::handler(SIGUSR1, || {}).unwrap();
    drop(handler);
    verdant::yield_now(); // the dispatcher unwinds, the pipe action is unregistered
    kill_self(SIGUSR1); // terminates, as SIGUSR1 does by default
    verdant::sleep(Duration::from_secs(5));
    unreachable!("SIGUSR1 should have terminated the process");
}

#[test]
fn the_default_action_is_back_once_no_handler_is_left() {
    let (stderr, signal) = util::run_test_in_child("default_action_child");
    assert_eq!(signal, Some(SIGUSR1), "child's stderr: {stderr}");
}

/// Run in a child process by `the_portforwarder_drains_its_connections_on_sigterm`: the
/// example's server, forwarding to an echo server, until its graceful stop ends.
#[test]
fn portforwarder_child() {
    if !util::is_child_for("portforwarder_child") {
        return;
    }
    let upstream = StreamServer::new("127.0.0.1:0", echo::echo).unwrap();
    upstream.start().unwrap();
    let dest = upstream.local_addr().to_string();
    let server = portforwarder::forwarder("127.0.0.1:0", dest).unwrap();
    let _handlers = portforwarder::stop_on_signals(&server).unwrap();
    // Written to stdout itself: libtest may capture `println!` even with `--nocapture`.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {}", server.local_addr()).unwrap();
    stdout.flush().unwrap();
    server.serve_forever().unwrap();
    writeln!(stdout, "drained, handler errors: {}", server.stats().handler_errors).unwrap();
}

#[test]
fn the_portforwarder_drains_its_connections_on_sigterm() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "portforwarder_child", "--nocapture", "--test-threads=1"])
        .env(util::CHILD_MARKER, "portforwarder_child")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines().map(Result::unwrap);
    let addr = lines
        // libtest may have written "test portforwarder_child ... " on the same line.
        .find_map(|line| line.split_once("listening on ").map(|(_, addr)| addr.to_string()))
        .expect("the child prints its address");
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    let mut echoed = [0; 6];
    conn.write_all(b"before").unwrap();
    conn.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"before");

    // SAFETY: kill(2) on our child's pid touches no memory.
    assert_eq!(unsafe { libc::kill(child.id() as i32, SIGTERM) }, 0);
    // The listener closes: new connections are refused (attempts that slip in before are
    // simply closed again).
    loop {
        match std::net::TcpStream::connect(&addr) {
            Ok(early) => drop(early),
            Err(err) => {
                assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // The connection it had goes on, unaffected.
    conn.write_all(b"after!").unwrap();
    conn.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"after!");
    drop(conn); // the last connection ends: the child exits
    let rest: Vec<String> = lines.collect();
    assert!(rest.iter().any(|line| line.contains("drained, handler errors: 0")), "{rest:?}");
    assert!(child.wait().unwrap().success());
}
