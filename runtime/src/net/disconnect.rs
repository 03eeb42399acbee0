//! Telling a peer that went away from a real error.

use std::io;

/// Whether `error` only means that the peer closed the connection abruptly: a reset
/// (`ECONNRESET`: the peer closed with unread data, or was killed), a broken pipe
/// (`EPIPE`: a write after the peer closed) or an aborted connection (`ECONNABORTED`).
///
/// For a server these are the ordinary end of a connection, not failures worth a report:
///
/// ```
/// use std::io::{self, Read, Write};
/// use verdant::net::{TcpStream, is_disconnect};
///
/// fn echo(mut stream: TcpStream) -> io::Result<()> {
///     let mut buf = [0; 1024];
///     loop {
///         let n = stream.read(&mut buf)?;
///         if n == 0 {
///             return Ok(());
///         }
///         stream.write_all(&buf[..n])?;
///     }
/// }
///
/// fn handler(stream: TcpStream) -> io::Result<()> {
///     match echo(stream) {
///         Err(err) if is_disconnect(&err) => Ok(()), // the client hung up
///         other => other,
///     }
/// }
/// # let _ = handler;
/// ```
pub fn is_disconnect(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_broken_pipes_and_aborts_are_disconnects_and_nothing_else() {
        let of = |errno| is_disconnect(&io::Error::from_raw_os_error(errno));
        assert!(of(libc::ECONNRESET) && of(libc::EPIPE) && of(libc::ECONNABORTED));
        assert!(!of(libc::ETIMEDOUT) && !of(libc::EMFILE) && !of(libc::ENOTCONN));
    }
}
