//! A TCP echo server on verdant's `StreamServer`: one greenlet per connection, one thread.
//! The server of workload W7 (drive it with the `loadgen` example).
//!
//! ```text
//! cargo run --release --example echo_server -- 127.0.0.1:7000
//! ```
//!
//! Serves until killed.

#[path = "support/echo.rs"]
mod support_echo;

use verdant::server::StreamServer;

/// Serves on the address given as the first argument until killed (public so that
/// `benches/compare_tokio.rs` can run it in a process of its own).
pub fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:7000".to_string());
    let server = StreamServer::new(addr.as_str(), support_echo::echo)?;
    println!("listening on {} (pid {})", server.local_addr(), std::process::id());
    server.serve_forever()
}
