//! W9's server: TechEmpower's plaintext test without pipelining. `GET /` gets `200 OK`,
//! `Hello, World!` with `Server`, `Content-Type`, `Content-Length` and `Date` headers;
//! keep-alive; requests parsed with `httparse` (`support/http.rs`), bad ones refused.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use verdant::net::{TcpStream, is_disconnect};

use super::http;

/// Serves one keep-alive connection (a `StreamServer` handler).
pub fn serve(stream: TcpStream, _peer: SocketAddr) -> io::Result<()> {
    match serve_requests(stream) {
        Err(err) if is_disconnect(&err) => Ok(()), // the client hung up
        done => done,
    }
}

fn serve_requests(mut stream: TcpStream) -> io::Result<()> {
    let mut input = Vec::with_capacity(4096);
    let mut output = Vec::with_capacity(4096);
    let mut chunk = [0; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        input.extend_from_slice(&chunk[..n]);
        let mut consumed = 0;
        let close = loop {
            match http::parse(&input[consumed..]) {
                http::Parsed::Request { len, keep_alive } => {
                    consumed += len;
                    append_hello(&mut output, keep_alive);
                    if !keep_alive {
                        break true;
                    }
                }
                http::Parsed::Partial => break false,
                http::Parsed::Refused(refusal) => {
                    output.extend_from_slice(refusal.response());
                    break true;
                }
            }
        };
        stream.write_all(&output)?;
        if close {
            return Ok(());
        }
        output.clear();
        input.drain(..consumed);
    }
}

thread_local! {
    /// This hub's response head up to the `Date` value, and the second it was made for.
    static HEAD: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
}

/// Appends the response; its `Date` is remade once a second per hub.
fn append_hello(output: &mut Vec<u8>, keep_alive: bool) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    HEAD.with_borrow_mut(|(second, head)| {
        if *second != now {
            *second = now;
            head.clear();
            head.extend_from_slice(
                b"HTTP/1.1 200 OK\r\nServer: verdant\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nDate: ",
            );
            head.extend_from_slice(http_date(now).as_bytes());
        }
        output.extend_from_slice(head);
    });
    let tail: &[u8] = if keep_alive {
        b"\r\n\r\nHello, World!"
    } else {
        b"\r\nConnection: close\r\n\r\nHello, World!"
    };
    output.extend_from_slice(tail);
}

/// `secs` since the epoch as an HTTP date (IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[month as usize - 1],
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31) in the proleptic Gregorian
/// calendar (the era arithmetic of Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year, from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}
