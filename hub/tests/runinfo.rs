//! Run information: `dump()` lists every live greenlet with its name, state, what it waits
//! on and where it was spawned; `SIGQUIT` prints it when the monitor is on; and a trace
//! started from `VERDANT_TRACE` is finished at exit.
//!
//! The signal and environment tests run in a child process (a `SIGQUIT` or an exit must
//! not touch the test binary). Assertions are about what is listed, never about timing.

use std::cell::Cell;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use verdant_hub::{self as hub, Builder, GreenletState, configure, dump, yield_now};
use verdant_sync::Event;

const CHILD: &str = "VERDANT_RUNINFO_CHILD";

fn track() {
    configure(|c| c.track_greenlets = true).unwrap();
}

#[test]
fn without_tracking_the_dump_counts_greenlets_and_says_how_to_list_them() {
    let sleeper = hub::spawn(|| hub::sleep(Duration::from_secs(3600)));
    yield_now();
    let info = dump();
    assert!(!info.tracking);
    assert!(info.greenlets.is_empty());
    assert_eq!(info.unlisted, 1);
    assert!(info.to_string().contains("HubConfig::track_greenlets"), "{info}");
    sleeper.kill();
}

#[test]
fn each_live_greenlet_is_listed_with_its_state_its_wait_and_where_it_was_spawned() {
    track();
    let event = Event::new();
    let waiting = event.clone();
    let (line, waiter) =
        (line!(), Builder::new().name("waiter").spawn(move || waiting.wait()).unwrap());
    let sleeper =
        Builder::new().name("sleeper").spawn(|| hub::sleep(Duration::from_secs(3600))).unwrap();
    yield_now(); // both run and park
    let not_started = Builder::new().name("later").spawn(|| ()).unwrap();
    let from_inside = hub::spawn(dump);

    let info = dump();
    assert!(info.tracking);
    assert_eq!(info.unlisted, 0);
    let ids: Vec<u64> = info.greenlets.iter().map(|g| g.id).collect();
    assert_eq!(ids, [0, waiter.id(), sleeper.id(), not_started.id(), from_inside.id()]);
    let [main, w, s, n, _] = &info.greenlets[..] else { unreachable!() };
    assert_eq!(main.state, GreenletState::Running);
    assert_eq!(w.name.as_deref(), Some("waiter"));
    assert_eq!(w.state, GreenletState::Waiting);
    assert_eq!(w.waits_on.as_deref(), Some("Event::wait()"));
    assert!(w.waiting_for.is_some());
    assert_eq!((w.spawned_at.file(), w.spawned_at.line()), (file!(), line));
    assert_eq!(s.waits_on.as_deref(), Some("sleep"));
    assert_eq!(n.state, GreenletState::NotStarted);
    assert_eq!(n.waits_on, None);

    let printed = info.to_string();
    assert!(printed.contains(r#"greenlet #1 "waiter" [waiting on Event::wait(), "#), "{printed}");
    assert!(printed.contains(&format!("spawned at {}:{line}:", file!())), "{printed}");

    // Seen from inside: the greenlet that dumps is the running one.
    let inside = from_inside.get().unwrap();
    let me = inside.greenlets.iter().find(|g| g.id == from_inside.id()).unwrap();
    assert_eq!(me.state, GreenletState::Running);
    assert_eq!(inside.greenlets[0].state, GreenletState::Waiting, "the main code waits in get()");

    // The dead leave the list.
    event.set();
    waiter.join();
    sleeper.kill();
    not_started.join();
    let ids: Vec<u64> = dump().greenlets.iter().map(|g| g.id).collect();
    assert_eq!(ids, [0]);
}

#[test]
fn the_resume_count_is_the_number_of_times_the_greenlet_ran() {
    track();
    let turns = Rc::new(Cell::new(0u64));
    let counted = turns.clone();
    let g = hub::spawn(move || {
        loop {
            counted.set(counted.get() + 1);
            yield_now();
        }
    });
    for _ in 0..5 {
        yield_now();
    }
    let listed = dump().greenlets.into_iter().find(|i| i.id == g.id()).unwrap();
    assert_eq!(listed.runs, turns.get());
    assert_eq!(listed.state, GreenletState::Ready);
    g.kill();
}

#[test]
fn greenlets_spawned_before_tracking_began_are_counted_as_unlisted() {
    let early = hub::spawn(|| hub::sleep(Duration::from_secs(3600)));
    track();
    let late = hub::spawn(|| hub::sleep(Duration::from_secs(3600)));
    yield_now();
    let info = dump();
    let ids: Vec<u64> = info.greenlets.iter().map(|g| g.id).collect();
    assert_eq!(ids, [0, late.id()]);
    assert_eq!(info.unlisted, 1);
    assert!(info.to_string().contains("and 1 greenlets spawned before tracking began"));
    early.kill();
    late.kill();
}

/// Starts this test binary again as a child running `test`, with `env`, and returns it
/// with its stderr piped.
fn child(test: &str, env: &[(&str, &str)]) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn is_child(test: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|v| v == test)
}

/// Puts `SIGQUIT` back to its default action. The test binary may have been started with
/// it ignored (a shell ignores `SIGINT` and `SIGQUIT` for its background jobs, and the
/// ignore is inherited), and the monitor leaves a disposition the program chose alone.
fn sigquit_at_default() {
    // SAFETY: setting a standard signal to SIG_DFL has no memory-safety preconditions; no
    // handler of this test's depends on it.
    unsafe { libc::signal(libc::SIGQUIT, libc::SIG_DFL) };
}

#[test]
fn sigquit_with_the_monitor_on_prints_every_greenlet_and_the_process_goes_on() {
    let mut child = child("sigquit_child", &[]);
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    let mut found = false;
    for line in stderr.lines() {
        let line = line.unwrap();
        found |= line.contains(r#""quitter" [waiting on sleep"#);
        seen.push(line);
        if found {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(found, "the dump names the parked greenlet: {seen:#?}");
    assert!(seen.iter().any(|l| l.contains("SIGQUIT: run information of 1 watched hub")));
}

#[test]
fn sigquit_child() {
    if !is_child("sigquit_child") {
        return;
    }
    sigquit_at_default();
    configure(|c| {
        c.track_greenlets = true;
        c.max_blocking_time = Some(Duration::from_secs(10));
    })
    .unwrap();
    let _quitter =
        Builder::new().name("quitter").spawn(|| hub::sleep(Duration::from_secs(3600))).unwrap();
    yield_now();
    // SAFETY: raise has no memory-safety preconditions; the monitor installed a handler.
    unsafe { libc::raise(libc::SIGQUIT) };
    // Keep serving until the parent has read the dump and kills us (or give up).
    hub::sleep(Duration::from_secs(60));
}

#[test]
fn verdant_trace_records_from_the_first_hub_and_finishes_the_file_at_exit() {
    let path = std::env::temp_dir().join(format!("verdant-env-trace-{}.json", std::process::id()));
    let path_text = path.to_str().unwrap();
    let mut child = child("env_trace_child", &[("VERDANT_TRACE", path_text)]);
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(child.wait().unwrap().success(), "{stderr}");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(text.trim_end().ends_with(']'), "the file was finished");
    let events: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(events.iter().any(|e| e["args"]["name"] == "from-env (#1)"));
}

#[test]
fn env_trace_child() {
    if !is_child("env_trace_child") {
        return;
    }
    let g = Builder::new().name("from-env").spawn(yield_now).unwrap();
    g.join();
    assert!(hub::trace::is_active());
}

#[test]
fn verdant_track_greenlets_turns_tracking_on_for_every_hub() {
    let mut child = child("env_track_child", &[("VERDANT_TRACK_GREENLETS", "1")]);
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(child.wait().unwrap().success(), "{stderr}");
}

#[test]
fn env_track_child() {
    if !is_child("env_track_child") {
        return;
    }
    assert!(hub::config().track_greenlets);
    let g = Builder::new().name("listed").spawn(yield_now).unwrap();
    let on_another_hub = std::thread::spawn(|| (hub::config().track_greenlets, dump().tracking));
    assert_eq!(on_another_hub.join().unwrap(), (true, true));
    assert!(dump().greenlets.iter().any(|i| i.name.as_deref() == Some("listed")));
    g.join();
}

#[test]
fn overflows_while_tracking_and_tracing_end_only_their_greenlet() {
    verdant_testutil::assert_test_passes_in_child("overflow_while_observed_child");
}

#[test]
fn overflow_while_observed_child() {
    if !verdant_testutil::is_child_for("overflow_while_observed_child") {
        return;
    }
    let path =
        std::env::temp_dir().join(format!("verdant-overflow-trace-{}.json", std::process::id()));
    track();
    hub::trace::start(&path).unwrap();
    for i in 0..50 {
        let g = Builder::new()
            .name(format!("deep-{i}"))
            .stack_size(32 * 1024)
            .spawn(|| verdant_testutil::recurse_forever(0))
            .unwrap();
        assert!(matches!(g.get(), Err(hub::GreenletError::StackOverflow { .. })));
    }
    let listed: Vec<u64> = dump().greenlets.iter().map(|g| g.id).collect();
    assert_eq!(listed, [0], "the overflowed greenlets are not listed");
    hub::trace::stop().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(text.matches("overflowed its stack").count(), 50, "each ending is recorded");
}

#[test]
fn sigquit_ends_the_process_again_once_no_hub_is_watched() {
    let (stderr, signal) = verdant_testutil::run_test_in_child("sigquit_unwatched_child");
    assert_eq!(signal, Some(libc::SIGQUIT), "{stderr}");
}

#[test]
fn sigquit_unwatched_child() {
    if !verdant_testutil::is_child_for("sigquit_unwatched_child") {
        return;
    }
    sigquit_at_default();
    configure(|c| c.max_blocking_time = Some(Duration::from_secs(10))).unwrap();
    configure(|c| c.max_blocking_time = None).unwrap();
    // SAFETY: raise has no memory-safety preconditions.
    unsafe { libc::raise(libc::SIGQUIT) };
    unreachable!("SIGQUIT's default action ends the process");
}
