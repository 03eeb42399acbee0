//! A TCP echo server on verdant's `StreamServer`: one greenlet per connection, one thread
//! (or, with `--hubs N`, one hub per thread on N threads, `0` for one per core, each with
//! its own `SO_REUSEPORT` listener: `MultiServer`). The server of workload W7 (drive it
//! with the `loadgen` example).
//!
//! ```text
//! cargo run --release --example echo_server -- 127.0.0.1:7000 [--hubs N]
//! ```
//!
//! Serves until killed.

#[path = "support/echo.rs"]
mod support_echo;

use std::io;

use verdant::Hubs;
use verdant::server::{MultiServer, StreamServer};

/// Serves on the address given as the first argument until killed (public so that
/// `benches/compare_tokio.rs` can run it in a process of its own).
pub fn main() -> io::Result<()> {
    let mut addr = "127.0.0.1:7000".to_string();
    let mut hubs = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--hubs" => hubs = Some(parse_hubs(args.next())?),
            _ if !arg.starts_with("--") => addr = arg,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unknown option {arg}"),
                ));
            }
        }
    }
    let pid = std::process::id();
    if let Some(hubs) = hubs {
        let server = MultiServer::start(addr.as_str(), Hubs::new(hubs), |_| support_echo::echo)?;
        println!("listening on {} (pid {pid}, {} hubs)", server.local_addr(), server.hubs());
        return server.wait();
    }
    let server = StreamServer::new(addr.as_str(), support_echo::echo)?;
    println!("listening on {} (pid {pid})", server.local_addr());
    server.serve_forever()
}

/// `--hubs N`: a number of hubs, 0 for one per core.
fn parse_hubs(value: Option<String>) -> io::Result<usize> {
    value.and_then(|v| v.parse().ok()).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "--hubs takes a number (0: one per core)")
    })
}
