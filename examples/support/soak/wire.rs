//! Client-side socket helpers: connecting with a hang guard, resetting on purpose, and
//! reading a response up to the server's close (capped).

use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use verdant::net::TcpStream;

/// How long a client waits for anything before it calls the server hung (a failure).
/// Far beyond every timeout of the servers, so it only trips on a real hang.
pub const HANG_GUARD: Duration = Duration::from_secs(30);

/// Connects, with `HANG_GUARD` as the read and write timeout.
pub fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
    stream.set_read_timeout(Some(HANG_GUARD)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(HANG_GUARD)).map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Turns an I/O error into a failure message naming what was being done.
pub fn failed(what: &'static str) -> impl Fn(io::Error) -> String {
    move |err| match err.kind() {
        io::ErrorKind::TimedOut => format!("{what}: no progress within {HANG_GUARD:?} (hung)"),
        _ => format!("{what}: {err}"),
    }
}

/// How a connection ended, seen from the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// A FIN: the server closed cleanly.
    Closed,
    /// A reset.
    Reset,
}

/// Reads until the server closes; everything read, at most `cap` bytes (more is a
/// failure: no answer the soak expects is that long).
pub fn read_until_close(mut stream: &TcpStream, cap: usize) -> Result<(Vec<u8>, End), String> {
    let mut got = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok((got, End::Closed)),
            Ok(n) if got.len() + n > cap => {
                return Err(format!("more than {cap} bytes before the close"));
            }
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {
                return Ok((got, End::Reset));
            }
            Err(err) => return Err(failed("waiting for the close")(err)),
        }
    }
}

/// Makes closing `stream` send a reset instead of a FIN (`SO_LINGER` with a zero
/// timeout), as a crashed or impatient client does.
pub fn set_linger_zero(stream: &TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    set_socket_option(stream, libc::SO_LINGER, &linger);
}

/// Shrinks the kernel's receive buffer of `stream`, so that a client that does not read
/// is behind sooner.
pub fn set_small_receive_buffer(stream: &TcpStream) {
    set_socket_option(stream, libc::SO_RCVBUF, &(4096 as libc::c_int));
}

/// Sets the `SOL_SOCKET`-level option `name`; a failure only makes the scenario less
/// sharp, so it is ignored.
fn set_socket_option<T>(stream: &TcpStream, name: libc::c_int, value: &T) {
    // SAFETY: setsockopt reads `size_of::<T>()` bytes from a valid reference to a `T`, and
    // the fd is open for as long as `stream` is borrowed.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
}
