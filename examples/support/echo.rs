//! The echo handler shared by `echo_server` and the `workloads` W7 run.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use verdant::net::TcpStream;

/// Writes back everything it reads until the client closes.
pub fn echo(mut stream: TcpStream, _peer: SocketAddr) -> io::Result<()> {
    let mut buf = [0; 16 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}
