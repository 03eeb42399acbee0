//! The echo handler shared by `echo_server` and the `workloads` W7 run.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use verdant::net::{TcpStream, is_disconnect};

/// Writes back everything it reads until the client closes. A client that hangs up with
/// a reset (or makes a write fail with a broken pipe) has simply closed: not an error.
pub fn echo(stream: TcpStream, _peer: SocketAddr) -> io::Result<()> {
    match echo_until_eof(stream) {
        Err(err) if is_disconnect(&err) => Ok(()),
        done => done,
    }
}

fn echo_until_eof(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0; 16 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}
