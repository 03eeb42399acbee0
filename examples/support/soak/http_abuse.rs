//! Clients that misbehave at the HTTP server: smuggling attempts, oversized heads and
//! bodies, garbage — each must get its 4xx/5xx and a clean close — and slow clients
//! (slowloris, silent, idle after a request), which the server's timeouts must close.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use super::http_load::HELLO;
use super::rng::Rng;
use super::tally::Tally;
use super::wire::{self, End, HANG_GUARD};

/// A bad request and the status it must get.
struct Case {
    name: &'static str,
    status: &'static str,
    request: fn(&mut Rng) -> Vec<u8>,
}

const BAD: &str = "400 Bad Request";
const TOO_LARGE: &str = "413 Content Too Large";
const HEAD_TOO_LARGE: &str = "431 Request Header Fields Too Large";
const NOT_IMPLEMENTED: &str = "501 Not Implemented";

const CASES: &[Case] = &[
    Case {
        name: "CL.TE smuggling",
        status: NOT_IMPLEMENTED,
        request: |_| {
            text(
                "POST / HTTP/1.1\r\nHost: soak\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
            )
        },
    },
    Case {
        name: "TE.CL smuggling",
        status: NOT_IMPLEMENTED,
        request: |_| {
            text(
                "POST / HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
            )
        },
    },
    Case {
        name: "two differing Content-Lengths",
        status: BAD,
        request: |_| {
            text(
                "POST / HTTP/1.1\r\nHost: soak\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            )
        },
    },
    Case {
        name: "a Content-Length list",
        status: BAD,
        request: |_| text("POST / HTTP/1.1\r\nHost: soak\r\nContent-Length: 5, 5\r\n\r\nhello"),
    },
    Case {
        name: "a negative Content-Length",
        status: BAD,
        request: |_| text("POST / HTTP/1.1\r\nHost: soak\r\nContent-Length: -1\r\n\r\n"),
    },
    Case {
        name: "a wrapping Content-Length hiding a second request",
        status: TOO_LARGE,
        request: |_| {
            text(
                "GET / HTTP/1.1\r\nHost: soak\r\nContent-Length: 18446744073709551615\r\n\r\nGET /admin HTTP/1.1\r\nHost: soak\r\n\r\n",
            )
        },
    },
    Case {
        name: "a body just over the limit",
        status: TOO_LARGE,
        request: |rng| {
            with_body("POST / HTTP/1.1\r\nHost: soak\r\nContent-Length: 65537\r\n\r\n", rng)
        },
    },
    Case {
        name: "a terabyte body",
        status: TOO_LARGE,
        request: |rng| {
            with_body("POST / HTTP/1.1\r\nHost: soak\r\nContent-Length: 1000000000000\r\n\r\n", rng)
        },
    },
    Case {
        name: "a head over 16 KiB",
        status: HEAD_TOO_LARGE,
        request: |rng| {
            let pad = "p".repeat(rng.between(16 * 1024, 24 * 1024));
            text(&format!("GET / HTTP/1.1\r\nHost: soak\r\nX-Pad: {pad}\r\n\r\n"))
        },
    },
    Case {
        name: "too many header fields",
        status: HEAD_TOO_LARGE,
        request: |rng| {
            let fields: String =
                (0..rng.between(33, 100)).map(|i| format!("X-{i}: y\r\n")).collect();
            text(&format!("GET / HTTP/1.1\r\nHost: soak\r\n{fields}\r\n"))
        },
    },
    Case {
        name: "HTTP/1.1 without Host",
        status: BAD,
        request: |_| text("GET / HTTP/1.1\r\n\r\n"),
    },
    Case {
        name: "two Hosts",
        status: BAD,
        request: |_| text("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    },
    Case {
        name: "Transfer-Encoding in HTTP/1.0",
        status: BAD,
        request: |_| text("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    },
    Case {
        name: "HTTP/2.0 in a request line",
        status: BAD,
        request: |_| text("GET / HTTP/2.0\r\nHost: soak\r\n\r\n"),
    },
    Case {
        name: "a space in a field name",
        status: BAD,
        request: |_| text("GET / HTTP/1.1\r\nHost: soak\r\nBad Name: x\r\n\r\n"),
    },
    Case {
        name: "binary garbage",
        status: BAD,
        request: |rng| {
            let mut garbage = vec![0; rng.between(1, 8 * 1024)];
            rng.fill(&mut garbage);
            garbage[0] = 0; // never a token character: refused at the first byte
            garbage
        },
    },
];

fn text(request: &str) -> Vec<u8> {
    request.as_bytes().to_vec()
}

/// `head` followed by up to 16 KiB of random body (the server must not wait for more).
fn with_body(head: &str, rng: &mut Rng) -> Vec<u8> {
    let mut request = text(head);
    let start = request.len();
    request.resize(start + rng.between(0, 16 * 1024), 0);
    rng.fill(&mut request[start..]);
    request
}

/// The whole error response of `http_hello` for `status`.
fn refusal(status: &str) -> Vec<u8> {
    text(&format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
}

/// Sends one random bad request; expects exactly its error response, then a clean close.
pub fn bad_request(addr: SocketAddr, rng: &mut Rng, tally: &Tally) -> Result<(), String> {
    let case = &CASES[rng.between(0, CASES.len() - 1)];
    let mut stream = wire::connect(addr)?;
    stream.write_all(&(case.request)(rng)).map_err(wire::failed("http: write a bad request"))?;
    let (response, end) = wire::read_until_close(&stream, 4096)?;
    if response != refusal(case.status) || end != End::Closed {
        let response = String::from_utf8_lossy(&response);
        return Err(format!(
            "http: {} got {response:?} then {end:?}, not {}",
            case.name, case.status
        ));
    }
    Tally::bump(&tally.refused);
    Ok(())
}

/// Slowloris: half a head, then one more byte every 300 ms. The request timeout runs from
/// the first byte, so trickling must not help: 408, then a clean close.
pub fn slowloris(addr: SocketAddr, tally: &Tally) -> Result<(), String> {
    const TRICKLE: Duration = Duration::from_millis(300);
    let mut stream = wire::connect(addr)?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: soak\r\nX-Slow: ")
        .map_err(wire::failed("slowloris: write"))?;
    stream.set_read_timeout(Some(TRICKLE)).map_err(wire::failed("slowloris"))?;
    let deadline = Instant::now() + HANG_GUARD;
    let mut first = [0; 1];
    let got = loop {
        match stream.read(&mut first) {
            Ok(n) => break n,
            Err(err) if err.kind() == ErrorKind::TimedOut && Instant::now() < deadline => {
                // If this fails, the server is closing: its answer is still to be read.
                let _ = stream.write_all(b"a");
            }
            Err(err) => return Err(wire::failed("slowloris: wait for the 408")(err)),
        }
    };
    let _ = stream.shutdown(Shutdown::Write); // ends the server's read of leftovers
    stream.set_read_timeout(Some(HANG_GUARD)).map_err(wire::failed("slowloris"))?;
    let (rest, end) = wire::read_until_close(&stream, 4096)?;
    let response = [&first[..got], &rest].concat();
    if response != refusal("408 Request Timeout") || end != End::Closed {
        let response = String::from_utf8_lossy(&response);
        return Err(format!("slowloris: got {response:?} then {end:?}, not a 408 and a close"));
    }
    Tally::bump(&tally.slow_closed);
    Ok(())
}

/// Connects and says nothing: the first-byte timeout must close the connection, with no
/// response.
pub fn silent(addr: SocketAddr, tally: &Tally) -> Result<(), String> {
    let stream = wire::connect(addr)?;
    match wire::read_until_close(&stream, 0)? {
        (_, End::Closed) => {
            Tally::bump(&tally.slow_closed);
            Ok(())
        }
        (_, End::Reset) => Err("silent client: reset instead of closed".to_string()),
    }
}

/// One request on a keep-alive connection, then silence: the idle timeout must close it.
pub fn idle(addr: SocketAddr, tally: &Tally) -> Result<(), String> {
    let mut stream = wire::connect(addr)?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n")
        .map_err(wire::failed("idle: write"))?;
    let mut response = [0; HELLO.len()];
    stream.read_exact(&mut response).map_err(wire::failed("idle: read"))?;
    if response != HELLO {
        return Err(format!("idle: got {:?}", String::from_utf8_lossy(&response)));
    }
    Tally::bump(&tally.http_ok);
    match wire::read_until_close(&stream, 0)? {
        (_, End::Closed) => {
            Tally::bump(&tally.slow_closed);
            Ok(())
        }
        (_, End::Reset) => Err("idle client: reset instead of closed".to_string()),
    }
}
