//! HTTP/1.1 hello-world with keep-alive on verdant: one greenlet per connection, plain
//! blocking reads and writes, requests parsed with `httparse`. curl and wrk drive it:
//!
//! ```text
//! cargo run --release --example http_hello -- 127.0.0.1:8080
//! curl -v http://127.0.0.1:8080/
//! wrk -t1 -c100 -d10s http://127.0.0.1:8080/
//! ```

#[path = "support/http.rs"]
mod http;

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use verdant::net::TcpStream;
use verdant::server::StreamServer;

/// Serves on the address given as the first argument until killed (public so that
/// `benches/compare_tokio.rs` can run it in a process of its own).
pub fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".to_string());
    let server = StreamServer::new(addr.as_str(), serve)?;
    println!("listening on http://{} (pid {})", server.local_addr(), std::process::id());
    server.serve_forever()
}

/// Serves requests on one connection until the client closes or asks to close.
pub fn serve(mut stream: TcpStream, _peer: SocketAddr) -> io::Result<()> {
    let mut input = Vec::with_capacity(4096);
    let mut output = Vec::with_capacity(4096);
    let mut chunk = [0; 4096];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(()), // the client closed
            Ok(n) => n,
            // A keep-alive client may hang up with a reset (wrk does): not an error.
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
            Err(err) => return Err(err),
        };
        input.extend_from_slice(&chunk[..n]);
        let answered = http::answer(&input, &mut output);
        stream.write_all(&output)?;
        output.clear();
        match answered {
            Some((consumed, true)) => drop(input.drain(..consumed)),
            Some((_, false)) | None => return Ok(()),
        }
    }
}
