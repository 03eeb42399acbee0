//! HTTP/1.1 hello-world with keep-alive on verdant: one greenlet per connection, plain
//! blocking reads and writes, requests parsed with `httparse`. curl and wrk drive it:
//!
//! ```text
//! cargo run --release --example http_hello -- 127.0.0.1:8080 [--hubs N] [--request-timeout 10] [--idle-timeout 60]
//! curl -v http://127.0.0.1:8080/
//! wrk -t1 -c100 -d10s http://127.0.0.1:8080/
//! ```
//!
//! Bad input gets 400/413/431/501 and a close (see `support/http.rs`); what it buffers
//! per connection is capped (a head of 16 KiB, a body of 64 KiB). Slow clients: the
//! first byte must come within the request timeout (10 s) of connecting, and each
//! request, head and body, within the request timeout of its first byte (else 408 and
//! close); between requests a keep-alive connection may stay idle for the idle timeout
//! (60 s), which also bounds every write. A client that resets the connection has simply
//! left: not an error.
//!
//! `--hubs N` serves on N hubs, one per thread (`0`: one per core), each with its own
//! `SO_REUSEPORT` listener (`MultiServer`); without it, one hub on the main thread.

#[path = "support/http.rs"]
mod http;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use verdant::Hubs;
use verdant::net::{TcpStream, is_disconnect};
use verdant::server::{MultiServer, StreamServer};

/// How long a slow client may take.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// For the first byte after connecting, and for each whole request from its first
    /// byte (nginx's `client_header_timeout` and `client_body_timeout` in one).
    pub request: Duration,
    /// Between requests on a keep-alive connection, and for every write.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts { request: Duration::from_secs(10), idle: Duration::from_secs(60) }
    }
}

/// After an error response: what is read and thrown away before closing (RFC 9112 §9.6),
/// at most.
const LINGER_BYTES: usize = 256 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Serves on the address given as the first argument until killed (public so that
/// `benches/compare_tokio.rs` can run it in a process of its own).
pub fn main() -> io::Result<()> {
    let (addr, timeouts, hubs) = parse_args(std::env::args().skip(1))?;
    let pid = std::process::id();
    if let Some(hubs) = hubs {
        let server = multi_server(&addr, timeouts, Hubs::new(hubs))?;
        println!("listening on http://{} (pid {pid}, {} hubs)", server.local_addr(), server.hubs());
        return server.wait();
    }
    let server = server(&addr, timeouts)?;
    println!("listening on http://{} (pid {pid})", server.local_addr());
    server.serve_forever()
}

/// `[ADDR] [--hubs N] [--request-timeout SECONDS] [--idle-timeout SECONDS]`.
fn parse_args(
    mut args: impl Iterator<Item = String>,
) -> io::Result<(String, Timeouts, Option<usize>)> {
    let mut addr = "127.0.0.1:8080".to_string();
    let mut timeouts = Timeouts::default();
    let mut hubs = None;
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "--hubs" => {
                let n = args.next().and_then(|n| n.parse().ok());
                hubs =
                    Some(n.ok_or_else(|| {
                        invalid("--hubs takes a number (0: one per core)".into())
                    })?);
                continue;
            }
            "--request-timeout" => &mut timeouts.request,
            "--idle-timeout" => &mut timeouts.idle,
            _ if !arg.starts_with("--") => {
                addr = arg;
                continue;
            }
            _ => return Err(invalid(format!("unknown option {arg}"))),
        };
        let value = args.next().unwrap_or_default();
        *slot = value
            .parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| invalid(format!("{arg} takes a positive number of seconds")))?;
    }
    Ok((addr, timeouts, hubs))
}

/// The server, bound and configured, not started.
pub fn server(addr: &str, timeouts: Timeouts) -> io::Result<StreamServer> {
    let server =
        StreamServer::new(addr, move |stream, _: SocketAddr| serve(stream, timeouts.request))?;
    Ok(server.with_first_byte_timeout(timeouts.request).with_idle_timeout(timeouts.idle))
}

/// The server on `hubs`, one `SO_REUSEPORT` listener each, started.
pub fn multi_server(addr: &str, timeouts: Timeouts, hubs: Hubs) -> io::Result<MultiServer> {
    MultiServer::builder(hubs)
        .configure(move |server| {
            server.with_first_byte_timeout(timeouts.request).with_idle_timeout(timeouts.idle)
        })
        .start(addr, move |_| move |stream, _: SocketAddr| serve(stream, timeouts.request))
}

/// Serves requests on one connection until the client closes or asks to close. The
/// server's idle timeout is the stream's read timeout when this starts.
pub fn serve(stream: TcpStream, request_timeout: Duration) -> io::Result<()> {
    match serve_requests(&stream, request_timeout) {
        Err(err) if is_disconnect(&err) => Ok(()), // the client hung up
        done => done,
    }
}

fn serve_requests(mut stream: &TcpStream, request_timeout: Duration) -> io::Result<()> {
    let mut input = Vec::with_capacity(4096);
    let mut output = Vec::with_capacity(4096);
    let mut chunk = [0; 4096];
    let mut clock = RequestClock::new(stream, request_timeout)?;
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(()), // the client closed
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::TimedOut && clock.running() => {
                stream.write_all(http::Refusal::RequestTimeout.response())?;
                close_after_error(stream);
                return Err(err); // counted by the server as timed out
            }
            Err(err) => return Err(err),
        };
        input.extend_from_slice(&chunk[..n]);
        let next = http::answer(&input, &mut output);
        stream.write_all(&output)?;
        output.clear();
        match next {
            http::Next::Read { consumed } => drop(input.drain(..consumed)),
            http::Next::Close => return Ok(()),
            http::Next::CloseAfterError => {
                close_after_error(stream);
                return Ok(());
            }
        }
        clock.update(stream, !input.is_empty())?;
    }
}

/// The request timeout: runs from the first byte of a request until it is whole, as the
/// stream's read timeout; between requests the idle timeout applies instead.
struct RequestClock {
    timeout: Duration,
    idle: Option<Duration>,
    deadline: Option<Instant>,
}

impl RequestClock {
    fn new(stream: &TcpStream, timeout: Duration) -> io::Result<RequestClock> {
        Ok(RequestClock { timeout, idle: stream.read_timeout()?, deadline: None })
    }

    /// Whether a request is partly in.
    fn running(&self) -> bool {
        self.deadline.is_some()
    }

    /// After answering: starts, continues or stops the clock. Costs nothing when every
    /// request came whole (the common case).
    fn update(&mut self, stream: &TcpStream, partial: bool) -> io::Result<()> {
        if !partial {
            if self.deadline.take().is_some() {
                stream.set_read_timeout(self.idle)?;
            }
            return Ok(());
        }
        let now = Instant::now();
        let deadline = *self.deadline.get_or_insert(now + self.timeout);
        let left = deadline.saturating_duration_since(now).max(Duration::from_millis(1));
        stream.set_read_timeout(Some(self.idle.map_or(left, |idle| idle.min(left))))
    }
}

/// Closes without losing the error response just written: a close with unread input
/// would reset the connection, and the client might lose the response. So: shut down
/// writing, then read and throw away what the client still sends, up to `LINGER_BYTES`
/// within `LINGER_TIME` (RFC 9112 §9.6).
fn close_after_error(mut stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER_TIME;
    let mut discarded = 0;
    let mut chunk = [0; 4096];
    while discarded < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
    }
}
