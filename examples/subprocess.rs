//! Subprocesses from greenlets (gevent's `examples/processes.py`): several commands run at
//! once, each waited for by its own greenlet, while another greenlet keeps ticking, and a
//! child fed through its stdin while its stdout is read. One thread, no thread per child.
//!
//! ```text
//! cargo run --release --example subprocess
//! ```

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use verdant::process::{Command, Stdio};

/// Runs `sh -c script` for every script at once; returns their stdouts, in order.
pub fn run_all(scripts: &[&str]) -> io::Result<Vec<String>> {
    let runs: Vec<_> = scripts
        .iter()
        .map(|script| {
            let script = script.to_string();
            verdant::spawn(move || Command::new("sh").args(["-c", &script]).output())
        })
        .collect();
    runs.into_iter()
        .map(|run| {
            let output = run.take().map_err(|err| io::Error::other(err.to_string()))??;
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        })
        .collect()
}

/// Sorts `lines` with `sort`: one greenlet writes its stdin while this one reads its stdout.
pub fn sort_lines(lines: Vec<String>) -> io::Result<Vec<String>> {
    let mut child = Command::new("sort").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let writer = verdant::spawn(move || {
        for line in lines {
            writeln!(stdin, "{line}")?;
        }
        Ok::<(), io::Error>(()) // stdin is dropped: `sort` sees the end of its input
    });
    let mut sorted = String::new();
    child.stdout.take().expect("piped").read_to_string(&mut sorted)?;
    writer.take().map_err(|err| io::Error::other(err.to_string()))??;
    child.wait()?;
    Ok(sorted.lines().map(str::to_string).collect())
}

fn main() -> io::Result<()> {
    let started = Instant::now();
    let ticker = verdant::spawn(|| {
        for tick in 1.. {
            verdant::sleep(Duration::from_millis(100));
            println!("  tick {tick}: the hub is free while the children run");
        }
    });
    let outputs = run_all(&["uname -sr", "sleep 0.3; echo slept 0.3 s", "ls / | head -3"])?;
    for output in &outputs {
        print!("{output}");
    }
    println!("three commands at once: {:?}", started.elapsed());
    let words = ["pear", "apple", "fig"].map(str::to_string).to_vec();
    println!("sorted by `sort`: {:?}", sort_lines(words)?);
    ticker.kill();
    Ok(())
}
