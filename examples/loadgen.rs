//! W7's load client: opens N connections to an echo server, each sends M messages of S
//! bytes and waits for every echo; prints messages per second, p50/p99 round-trip latency
//! and, given the server's pid, the server's CPU time per message.
//!
//! ```text
//! cargo run --release --example loadgen -- <addr> [--pid PID] [-c 100] [-n 10000] [-s 64]
//! ```
//!
//! Works against any echo server. Figures go to stdout as `RESULT W7 ...` lines.

#[path = "support/tcp_load.rs"]
mod tcp_load;

use std::net::SocketAddr;

use tcp_load::Load;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut addr: Option<SocketAddr> = None;
    let mut pid = None;
    let mut load = Load { connections: 100, messages: 10_000, size: 64 };
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--pid" => pid = Some(number(&value()) as u32),
            "-c" => load.connections = number(&value()),
            "-n" => load.messages = number(&value()),
            "-s" => load.size = number(&value()),
            other => addr = Some(other.parse().unwrap_or_else(|_| usage("bad address"))),
        }
    }
    let addr = addr.unwrap_or_else(|| usage("the server address is missing"));
    eprintln!(
        "W7 tcp-echo: {} connections x {} messages of {} B against {addr}",
        load.connections, load.messages, load.size
    );
    tcp_load::run(addr, load, pid)?.print("W7");
    Ok(())
}

fn number(text: &str) -> usize {
    text.parse().unwrap_or_else(|_| usage(&format!("{text:?} is not a number")))
}

fn usage(problem: &str) -> ! {
    eprintln!("loadgen: {problem}\nusage: loadgen <addr> [--pid PID] [-c 100] [-n 10000] [-s 64]");
    std::process::exit(2)
}
