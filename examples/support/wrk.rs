//! Running `wrk` against a server and reading its report (W9).

use std::io;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

/// What one wrk run measured.
#[derive(Debug)]
pub struct WrkReport {
    /// Requests completed.
    pub requests: u64,
    pub requests_per_second: f64,
    pub p99: Duration,
    /// wrk's lines about socket errors or non-2xx responses, if any.
    pub errors: Vec<String>,
}

/// Whether `wrk` can be run.
pub fn available() -> bool {
    Command::new("wrk").arg("-v").output().is_ok()
}

/// `wrk -t1 -c<connections> -d<seconds>s --latency http://<addr>/`, on `cpu` only if given
/// (through `taskset`).
pub fn run(
    addr: SocketAddr,
    connections: usize,
    seconds: u64,
    cpu: Option<usize>,
) -> io::Result<WrkReport> {
    let url = format!("http://{addr}/");
    let args = [
        "-t1".to_string(),
        format!("-c{connections}"),
        format!("-d{seconds}s"),
        "--latency".into(),
        url,
    ];
    let output = match cpu {
        Some(cpu) => Command::new("taskset")
            .arg("-c")
            .arg(cpu.to_string())
            .arg("wrk")
            .args(&args)
            .output()?,
        None => Command::new("wrk").args(&args).output()?,
    };
    let text = String::from_utf8_lossy(&output.stdout);
    parse(&text).ok_or_else(|| {
        io::Error::other(format!(
            "could not read wrk's report:\n{text}{}",
            String::from_utf8_lossy(&output.stderr)
        ))
    })
}

fn parse(text: &str) -> Option<WrkReport> {
    let requests =
        text.lines().find_map(|l| l.trim().split_once(" requests in"))?.0.trim().parse().ok()?;
    let requests_per_second =
        text.lines().find_map(|l| l.strip_prefix("Requests/sec:"))?.trim().parse().ok()?;
    let p99 = text.lines().find_map(|l| l.trim().strip_prefix("99%"))?.trim();
    let p99_us = match p99 {
        ms if ms.ends_with("ms") => ms.trim_end_matches("ms").parse::<f64>().ok()? * 1e3,
        us if us.ends_with("us") => us.trim_end_matches("us").parse::<f64>().ok()?,
        s => s.trim_end_matches('s').parse::<f64>().ok()? * 1e6,
    };
    let errors = text
        .lines()
        .filter(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
        .map(|l| l.trim().to_string())
        .collect();
    Some(WrkReport {
        requests,
        requests_per_second,
        p99: Duration::from_secs_f64(p99_us / 1e6),
        errors,
    })
}
