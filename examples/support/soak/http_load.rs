//! Well-behaved clients of the HTTP server: keep-alive connections carrying 1 to 20
//! requests (GET, POST with a body, HTTP/1.0 keep-alive), some pipelined, every response
//! compared byte for byte; and clients that reset in the middle of a request.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};

use super::rng::Rng;
use super::tally::Tally;
use super::wire::{self, End};

/// What `http_hello` answers to a request that keeps the connection open.
pub const HELLO: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!";
/// And to the last request of a connection.
const HELLO_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, world!";

/// Requests per connection, at most; requests written together, at most.
const MAX_REQUESTS: usize = 20;
const MAX_PIPELINED: usize = 3;
/// The largest POST body sent.
const MAX_BODY: usize = 2048;

/// One keep-alive connection: random requests in random batches, each batch's responses
/// checked; the last request may ask to close, else the client half-closes. Either way
/// the server must then close cleanly.
pub fn keep_alive(addr: SocketAddr, rng: &mut Rng, tally: &Tally) -> Result<(), String> {
    let mut stream = wire::connect(addr)?;
    let total = rng.between(1, MAX_REQUESTS);
    let close_at_end = rng.one_in(2);
    let (mut batch, mut expected) = (Vec::new(), Vec::new());
    let mut sent = 0;
    while sent < total {
        let n = rng.between(1, MAX_PIPELINED).min(total - sent);
        batch.clear();
        expected.clear();
        for i in 0..n {
            let close = close_at_end && sent + i + 1 == total;
            expected.extend_from_slice(request(rng, close, &mut batch));
        }
        round_trip(&mut stream, &batch, &expected)?;
        tally.http_ok.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        sent += n;
    }
    if !close_at_end {
        stream.shutdown(Shutdown::Write).map_err(wire::failed("http: shutdown"))?;
    }
    match wire::read_until_close(&stream, 0)? {
        (_, End::Closed) => Ok(()),
        (_, End::Reset) => Err("http: the server reset instead of closing".to_string()),
    }
}

/// A few checked requests, then half a request, and a reset.
pub fn reset_midway(addr: SocketAddr, rng: &mut Rng, tally: &Tally) -> Result<(), String> {
    let mut stream = wire::connect(addr)?;
    let mut batch = Vec::new();
    for _ in 0..rng.between(0, 3) {
        batch.clear();
        let expected = request(rng, false, &mut batch);
        round_trip(&mut stream, &batch, expected)?;
        Tally::bump(&tally.http_ok);
    }
    batch.clear();
    request(rng, false, &mut batch);
    let cut = rng.between(1, batch.len() - 1);
    stream.write_all(&batch[..cut]).map_err(wire::failed("http: write before the reset"))?;
    wire::set_linger_zero(&stream);
    drop(stream);
    Tally::bump(&tally.resets);
    Ok(())
}

/// Writes `requests` and reads exactly `expected` back.
fn round_trip(
    stream: &mut verdant::net::TcpStream,
    requests: &[u8],
    expected: &[u8],
) -> Result<(), String> {
    stream.write_all(requests).map_err(wire::failed("http: write"))?;
    let mut got = vec![0; expected.len()];
    stream.read_exact(&mut got).map_err(wire::failed("http: read the responses"))?;
    if got != expected {
        let got = String::from_utf8_lossy(&got);
        return Err(format!("http: expected {:?}, got {got:?}", String::from_utf8_lossy(expected)));
    }
    Ok(())
}

/// Appends a random valid request to `out`; returns the response it must get. `close`:
/// the request asks to close the connection.
fn request(rng: &mut Rng, close: bool, out: &mut Vec<u8>) -> &'static [u8] {
    let connection = if close { "Connection: close\r\n" } else { "" };
    match rng.between(0, 2) {
        0 => out.extend_from_slice(
            format!("GET /{} HTTP/1.1\r\nHost: soak\r\n{connection}\r\n", rng.next_u64())
                .as_bytes(),
        ),
        1 => {
            let body = rng.between(0, MAX_BODY);
            let head = format!(
                "POST /form HTTP/1.1\r\nHost: soak\r\nContent-Length: {body}\r\n{connection}\r\n"
            );
            out.extend_from_slice(head.as_bytes());
            let start = out.len();
            out.resize(start + body, 0);
            rng.fill(&mut out[start..]);
        }
        _ => {
            let connection = if close { "" } else { "Connection: keep-alive\r\n" };
            out.extend_from_slice(format!("GET / HTTP/1.0\r\n{connection}\r\n").as_bytes());
        }
    }
    if close { HELLO_CLOSE } else { HELLO }
}
