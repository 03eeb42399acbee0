//! The `soak` example, run for a few seconds: it must exit successfully, with every echo,
//! response and pool value checked and no failure. No assertion on throughput or timing:
//! on a loaded machine the counts are smaller, not wrong.
//!
//! This test binary has its own `main` (`harness = false`), as `tests/processpool.rs`
//! does: the example's pool re-executes the binary, and `worker_main()` must come first.
//! The soak runs in a child process (this binary again), so that a hang can be killed.

#[allow(dead_code, reason = "the example's `main` is included but not called")]
#[path = "../examples/soak.rs"]
mod soak_example;

use std::io::Read;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Tells the re-executed copy of this binary to run the soak.
const CHILD_ENV: &str = "VERDANT_SOAK_TEST_CHILD";

/// A short run. The servers' timeouts are generous, so that a client starved of CPU on
/// a busy machine is not mistaken for a slow client.
const ARGS: &[&str] =
    &["--seconds", "8", "--interval", "2", "--request-timeout", "4", "--idle-timeout", "4"];

/// How long the run may take before it counts as hung (it needs about 10 s).
const HANG_GUARD: Duration = Duration::from_secs(300);

fn main() -> ExitCode {
    verdant::processpool::worker_main();
    if std::env::var_os(CHILD_ENV).is_some() {
        return soak_example::run_from_args(std::env::args().skip(1));
    }
    a_short_soak_passes_with_no_failure();
    println!("test a_short_soak_passes_with_no_failure ... ok");
    ExitCode::SUCCESS
}

fn a_short_soak_passes_with_no_failure() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(ARGS)
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the soak");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut output = String::new();
        stdout.read_to_string(&mut output).map(|_| output)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HANG_GUARD {
            let _ = child.kill();
            panic!("the soak did not finish within {HANG_GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = reader.join().unwrap().unwrap();
    assert!(status.success(), "the soak failed ({status}):\n{output}");
    let summary = output.lines().find(|l| l.starts_with("soak: [")).unwrap_or_default();
    assert!(summary.ends_with("| failures 0"), "{output}");
    assert!(summary.contains("unexpected 0 |"), "{output}");
    assert!(output.lines().any(|l| l == "soak: PASS"), "{output}");
    assert!(output.contains("RESULT soak-rss-growth "), "{output}");
}
