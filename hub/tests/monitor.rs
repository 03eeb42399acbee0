//! The blocked-hub monitor (`HubConfig::max_blocking_time`, gevent's `max_blocking_time`):
//! a greenlet that holds its hub past the threshold is reported once, by name and spawn
//! location; well-behaved greenlets never are.
//!
//! The reporter is process-wide, so every test runs its hub on a thread of its own name and
//! looks only at the reports for that thread.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use verdant_hub::{BlockingReport, Builder, configure, set_blocking_reporter, spawn, stats};

fn reports() -> &'static Mutex<Vec<BlockingReport>> {
    static REPORTS: OnceLock<Mutex<Vec<BlockingReport>>> = OnceLock::new();
    REPORTS.get_or_init(|| {
        set_blocking_reporter(|report| REPORTS.get().unwrap().lock().unwrap().push(report.clone()));
        Mutex::new(Vec::new())
    })
}

fn reports_for(thread: &str) -> Vec<BlockingReport> {
    reports().lock().unwrap().iter().filter(|r| r.thread == thread).cloned().collect()
}

/// Runs `f` on a new thread named `name` whose hub is watched with `threshold`.
fn on_watched_hub<R: Send + 'static>(
    name: &str,
    threshold: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    reports();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            configure(|c| c.max_blocking_time = Some(threshold)).unwrap();
            f()
        })
        .unwrap()
        .join()
        .unwrap()
}

fn hog_300_ms() -> u64 {
    hog_for(Duration::from_millis(300))
}

/// Computes without switching until `d` of wall time has passed.
fn hog_for(d: Duration) -> u64 {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < d {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
    x
}

#[test]
fn a_greenlet_that_computes_for_300_ms_is_reported_once_by_name_and_spawn_line() {
    let (line, blocking_reports) =
        on_watched_hub("monitor-hog", Duration::from_millis(100), || {
            let builder = Builder::new().name("hog");
            let (hog, line) = (builder.spawn(hog_300_ms).unwrap(), line!());
            hog.join();
            // Wait until the monitor has seen the hub switch again, so a late second report
            // would have been made by now.
            for _ in 0..3 {
                verdant_hub::sleep(Duration::from_millis(30));
            }
            (line, stats().blocking_reports)
        });
    let seen = reports_for("monitor-hog");
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(blocking_reports, 1);
    let report = &seen[0];
    let greenlet = report.greenlet.as_ref().expect("the report names the greenlet");
    assert_eq!(greenlet.name.as_deref(), Some("hog"));
    assert_eq!(greenlet.spawned_at.file(), file!());
    assert_eq!(greenlet.spawned_at.line(), line);
    assert!(report.blocked_for >= Duration::from_millis(100), "{report:?}");
    assert_eq!(report.threshold, Duration::from_millis(100));
    let line = report.to_string();
    assert!(line.contains("greenlet 'hog'") && line.contains("monitor-hog"), "{line}");
}

#[test]
fn each_blocking_episode_is_reported_and_unnamed_greenlets_by_id() {
    let ids = on_watched_hub("monitor-twice", Duration::from_millis(100), || {
        let first = spawn(|| hog_for(Duration::from_millis(300)));
        let second = spawn(|| hog_for(Duration::from_millis(300)));
        first.join();
        second.join();
        [first.id(), second.id()]
    });
    let seen: Vec<u64> = reports_for("monitor-twice")
        .iter()
        .map(|r| r.greenlet.as_ref().expect("named").id)
        .collect();
    assert_eq!(seen, ids);
}

#[test]
fn a_blocking_call_in_a_greenlet_is_named_too_and_shared_stacks_are_no_different() {
    let ids = on_watched_hub("monitor-syscall", Duration::from_millis(100), || {
        configure(|c| c.stack_mode = verdant_hub::StackMode::Shared).unwrap();
        // The classic mistake: a blocking sleep in a greenlet. The probe signal interrupts
        // it; std's sleep goes on sleeping for the rest.
        let sleeper = spawn(|| {
            let start = Instant::now();
            std::thread::sleep(Duration::from_millis(300));
            start.elapsed()
        });
        let slept = sleeper.get().unwrap();
        assert!(slept >= Duration::from_millis(300), "{slept:?}");
        let hog = spawn(|| hog_for(Duration::from_millis(300)));
        hog.join();
        [sleeper.id(), hog.id()]
    });
    let seen: Vec<u64> = reports_for("monitor-syscall")
        .iter()
        .map(|r| r.greenlet.as_ref().expect("named").id)
        .collect();
    assert_eq!(seen, ids);
}

#[test]
fn greenlets_that_switch_often_are_never_reported() {
    let done = on_watched_hub("monitor-calm", Duration::from_secs(1), || {
        let counter = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let workers: Vec<_> = (0..100)
            .map(|_| {
                let counter = counter.clone();
                spawn(move || {
                    for _ in 0..50 {
                        hog_for(Duration::from_micros(50));
                        counter.set(counter.get() + 1);
                        verdant_hub::yield_now();
                    }
                })
            })
            .collect();
        let sleepers: Vec<_> =
            (0..100).map(|i| spawn(move || verdant_hub::sleep(Duration::from_millis(i)))).collect();
        verdant_hub::joinall(&workers, verdant_hub::WaitFor::all());
        verdant_hub::joinall(&sleepers, verdant_hub::WaitFor::all());
        assert_eq!(stats().blocking_reports, 0);
        counter.get()
    });
    assert_eq!(done, 100 * 50);
    assert!(reports_for("monitor-calm").is_empty());
}

#[test]
fn the_main_code_between_hub_calls_and_an_idle_hub_are_not_reported() {
    // A threshold well above how long a loaded machine may deschedule the hub's thread.
    on_watched_hub("monitor-idle", Duration::from_millis(200), || {
        spawn(|| ()).join(); // the hub exists and has run
        hog_for(Duration::from_millis(400)); // the main code computes: the hub is not running
        verdant_hub::sleep(Duration::from_millis(400)); // the hub waits in epoll: idle
    });
    assert!(reports_for("monitor-idle").is_empty());
}

#[test]
fn turning_the_monitor_off_stops_reports() {
    let reported = on_watched_hub("monitor-off", Duration::from_millis(20), || {
        configure(|c| c.max_blocking_time = None).unwrap();
        spawn(|| hog_for(Duration::from_millis(100))).join();
        stats().blocking_reports
    });
    assert_eq!(reported, 0);
    assert!(reports_for("monitor-off").is_empty());
}

#[test]
fn the_environment_variable_turns_it_on_with_a_line_on_stderr() {
    if std::env::var_os("VERDANT_MONITOR_CHILD").is_some() {
        let g =
            Builder::new().name("env-hog").spawn(|| hog_for(Duration::from_millis(300))).unwrap();
        g.join();
        assert_eq!(stats().blocking_reports, 1);
        std::thread::sleep(Duration::from_millis(100)); // let the report thread write it
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "the_environment_variable_turns_it_on_with_a_line_on_stderr"])
        .args(["--nocapture", "--test-threads=1"])
        .env("VERDANT_MONITOR_CHILD", "1")
        .env(verdant_hub::MAX_BLOCKING_TIME_ENV, "0.1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("verdant: greenlet 'env-hog'"), "{stderr}");
    assert!(stderr.contains("monitor.rs:"), "the spawn location: {stderr}");
}

#[test]
fn a_bad_environment_value_is_reported_and_ignored() {
    if std::env::var_os("VERDANT_MONITOR_CHILD").is_some() {
        spawn(|| ()).join();
        assert_eq!(verdant_hub::config().max_blocking_time, None);
        std::thread::sleep(Duration::from_millis(100));
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_bad_environment_value_is_reported_and_ignored"])
        .args(["--nocapture", "--test-threads=1"])
        .env("VERDANT_MONITOR_CHILD", "1")
        .env(verdant_hub::MAX_BLOCKING_TIME_ENV, "soon")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("VERDANT_MAX_BLOCKING_TIME=\"soon\" is not a positive number"),
        "{stderr}"
    );
}

/// Keeps the reports type usable across threads (the reporter runs on the monitor thread).
#[allow(dead_code)]
fn assert_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<BlockingReport>();
    check::<Arc<BlockingReport>>();
}
