//! A UDP server on verdant's `DatagramServer`, the shape of gevent's `udp_server.py`: it
//! answers every datagram with how many bytes it got, one greenlet per datagram.
//!
//! ```text
//! cargo run --release --example udp_echo -- 127.0.0.1:9000
//! ```
//!
//! Try it with `echo -n hello | nc -u -w1 127.0.0.1 9000`. Serves until killed.

use std::io;
use std::net::SocketAddr;

use verdant::server::{DatagramHandle, DatagramServer};

/// Answers `Received N bytes` to the sender of `data`.
pub fn handle(data: &[u8], peer: SocketAddr, server: &DatagramHandle) -> io::Result<()> {
    println!("{}: got {:?}", peer.ip(), String::from_utf8_lossy(data));
    server.send_to(format!("Received {} bytes", data.len()).as_bytes(), peer)?;
    Ok(())
}

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9000".to_string());
    let server = DatagramServer::new(addr.as_str(), handle)?;
    println!("Receiving datagrams on {}", server.local_addr());
    server.serve_forever()
}
