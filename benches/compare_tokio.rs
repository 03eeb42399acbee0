//! The networking comparison with tokio, in one command, same machine, same session:
//!
//! ```text
//! cargo bench --bench compare_tokio
//! ```
//!
//! Runs, in alternating rounds (so both see the same machine weather), each server in a
//! process of its own — this binary re-executed as `echo_server`, `tokio_echo_server`,
//! `http_hello` or `tokio_http_hello` (the examples' own code) — and drives it from here:
//! W7 with the `loadgen` client code (100 connections × 10,000 messages of 64 bytes;
//! msg/s, p99, server CPU per message), and `wrk -t1 -c100` when wrk is installed
//! (requests/s, p99). Prints the medians, the ratios, and `RESULT` lines.
//!
//! `VERDANT_COMPARE_ROUNDS` (default 3), `VERDANT_COMPARE_MESSAGES` (per connection,
//! default 10000) and `VERDANT_COMPARE_WRK_SECONDS` (default 10) size the run.

// The examples' modules are included whole, and both HTTP servers include
// `support/http.rs`, as the two examples do on their own.
#![allow(dead_code, clippy::duplicate_mod)]

#[path = "../examples/echo_server.rs"]
mod echo_server;
#[path = "../examples/http_hello.rs"]
mod http_hello;
#[path = "../examples/support/tcp_load.rs"]
mod tcp_load;
#[path = "../examples/tokio_echo_server.rs"]
mod tokio_echo_server;
#[path = "../examples/tokio_http_hello.rs"]
mod tokio_http_hello;
#[path = "../examples/support/wrk.rs"]
mod wrk;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// Tells a re-executed copy of this binary which server to be.
const SERVER_ENV: &str = "VERDANT_COMPARE_SERVER";

/// A server process and where it listens.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(which: &str) -> Server {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("127.0.0.1:0")
            .env(SERVER_ENV, which)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a server process");
        // The examples print "listening on [http://]ADDR (pid N)" first.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line
            .split_whitespace()
            .nth(2)
            .map(|a| a.trim_start_matches("http://"))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{which} printed {line:?}"));
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One W7 run: (msg/s, p99 µs, server CPU ns/msg).
fn w7(which: &str, messages: usize) -> (f64, f64, f64) {
    let server = Server::start(which);
    let load = tcp_load::Load { connections: 100, messages, size: 64 };
    let report = tcp_load::run(server.addr, load, Some(server.child.id())).unwrap();
    let cpu = report.server_cpu.unwrap().as_nanos() as f64 / report.messages as f64;
    (report.messages_per_second(), report.p99.as_secs_f64() * 1e6, cpu)
}

/// One wrk run: (requests/s, p99 µs), or `None` without wrk.
fn wrk(which: &str, seconds: usize) -> Option<(f64, f64)> {
    let server = Server::start(which);
    let report = wrk::run(server.addr, 100, seconds as u64, None).ok()?;
    if !report.errors.is_empty() {
        eprintln!("wrk reported errors against {which}: {:?}", report.errors);
    }
    Some((report.requests_per_second, report.p99.as_secs_f64() * 1e6))
}

fn main() {
    if let Ok(which) = std::env::var(SERVER_ENV) {
        let served = match which.as_str() {
            "echo-verdant" => echo_server::main(),
            "echo-tokio" => tokio_echo_server::main(),
            "http-verdant" => http_hello::main(),
            "http-tokio" => tokio_http_hello::main(),
            other => panic!("unknown server {other}"),
        };
        served.unwrap();
        return;
    }
    let rounds = env_number("VERDANT_COMPARE_ROUNDS", 3);
    let messages = env_number("VERDANT_COMPARE_MESSAGES", 10_000);
    let seconds = env_number("VERDANT_COMPARE_WRK_SECONDS", 10);
    let has_wrk = wrk::available();

    let mut w7_runs: [Vec<(f64, f64, f64)>; 2] = [Vec::new(), Vec::new()];
    let mut wrk_runs: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=rounds {
        for (i, runtime) in ["verdant", "tokio"].into_iter().enumerate() {
            let run = w7(&format!("echo-{runtime}"), messages);
            eprintln!(
                "round {round} W7 {runtime}: {:.0} msg/s, p99 {:.0} us, {:.0} ns CPU/msg",
                run.0, run.1, run.2
            );
            w7_runs[i].push(run);
            if has_wrk && let Some(run) = wrk(&format!("http-{runtime}"), seconds) {
                eprintln!("round {round} wrk {runtime}: {:.0} req/s, p99 {:.0} us", run.0, run.1);
                wrk_runs[i].push(run);
            }
        }
    }
    if !has_wrk {
        eprintln!("wrk is not installed (Debian: apt-get install wrk): HTTP skipped");
    }

    println!("medians of {rounds} alternating rounds:");
    let w7_median = |i: usize, field: fn(&(f64, f64, f64)) -> f64| {
        median(w7_runs[i].iter().map(field).collect())
    };
    for (i, runtime) in ["verdant", "tokio"].into_iter().enumerate() {
        println!("RESULT compare-W7-{runtime} {:.0} msg/s", w7_median(i, |r| r.0));
        println!("RESULT compare-W7-p99-{runtime} {:.0} us", w7_median(i, |r| r.1));
        println!("RESULT compare-W7-server-cpu-{runtime} {:.0} ns/msg", w7_median(i, |r| r.2));
    }
    println!(
        "RESULT compare-W7-ratio {:.2} verdant/tokio-msg/s",
        w7_median(0, |r| r.0) / w7_median(1, |r| r.0)
    );
    if !wrk_runs[0].is_empty() && !wrk_runs[1].is_empty() {
        let wrk_median = |i: usize, field: fn(&(f64, f64)) -> f64| {
            median(wrk_runs[i].iter().map(field).collect())
        };
        for (i, runtime) in ["verdant", "tokio"].into_iter().enumerate() {
            println!("RESULT compare-http-{runtime} {:.0} req/s", wrk_median(i, |r| r.0));
            println!("RESULT compare-http-p99-{runtime} {:.0} us", wrk_median(i, |r| r.1));
        }
        println!(
            "RESULT compare-http-ratio {:.2} verdant/tokio-req/s",
            wrk_median(0, |r| r.0) / wrk_median(1, |r| r.0)
        );
    }
}
