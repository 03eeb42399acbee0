//! A web crawler bounded by a `Pool`, against a local HTTP server it starts itself.
//!
//! The server (greenlets too, on the same thread) serves a tree of 255 pages: `/page/N`
//! links to `/page/2N` and `/page/2N+1`, and every answer takes 20 ms (a slow backend).
//! The crawler fetches the pages level by level through a pool of 20 greenlets, printing
//! progress. Sequentially that would take 255 × 20 ms ≈ 5 s.
//!
//! ```text
//! cargo run --release --example crawler
//! ```
//!
//! Sockets here are plain `std::net` sockets in non-blocking mode, made cooperative with
//! `verdant::hub::io::wait_readable` / `wait_writable` (gevent's `wait_read`/`wait_write`).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use verdant::hub::io::{wait_readable, wait_writable};
use verdant::pool::{Group, Pool};
use verdant::{sleep, spawn};

const PAGES: u32 = 255;
const LATENCY: Duration = Duration::from_millis(20);
const CONCURRENCY: usize = 20;

fn main() -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let server = spawn(move || serve(listener));
    println!("serving {PAGES} pages on http://{addr}, each answered after {LATENCY:?}");

    let pool = Pool::new(CONCURRENCY);
    let started = Instant::now();
    let mut frontier = vec![1u32];
    let mut crawled = 0;
    let mut bytes = 0;
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for page in pool.imap_unordered(move |n| fetch(addr, n), frontier) {
            let (body, links) = page.expect("a fetch greenlet failed")?;
            bytes += body.len();
            next.extend(links);
            crawled += 1;
            if crawled % 50 == 0 {
                println!("  crawled {crawled:>3}/{PAGES} pages after {:?}", started.elapsed());
            }
        }
        frontier = next;
    }
    let elapsed = started.elapsed();
    println!(
        "crawled {crawled} pages ({bytes} bytes) in {elapsed:?} with {CONCURRENCY} at a time \
         (sequentially: about {:?})",
        LATENCY * PAGES
    );
    server.kill();
    Ok(())
}

/// Fetches `/page/n` and returns its body and the page numbers it links to.
fn fetch(addr: SocketAddr, n: u32) -> io::Result<(String, Vec<u32>)> {
    // A loopback connect completes at once; the slow part is the answer.
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nonblocking(true)?;
    write_all(&mut stream, format!("GET /page/{n} HTTP/1.0\r\nHost: crawler\r\n\r\n").as_bytes())?;
    let response = read_to_end(&mut stream)?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    let links = body
        .split("href=\"/page/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next()?.parse().ok())
        .collect();
    Ok((body, links))
}

/// Accepts connections and serves each in its own greenlet.
fn serve(listener: TcpListener) -> io::Result<()> {
    let connections = Group::new();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                connections.spawn(move || {
                    if let Err(err) = answer(stream) {
                        eprintln!("server: {err}");
                    }
                });
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                wait_readable(&listener, None)?;
            }
            Err(err) => return Err(err),
        }
    }
}

fn answer(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    let request = read_request(&mut stream)?;
    let n: u32 = request
        .split_whitespace()
        .nth(1)
        .and_then(|path| path.strip_prefix("/page/"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    sleep(LATENCY); // a slow backend: only this greenlet waits
    let links: String = [2 * n, 2 * n + 1]
        .iter()
        .filter(|child| (1..=PAGES).contains(child))
        .map(|child| format!("<a href=\"/page/{child}\">page {child}</a>\n"))
        .collect();
    let body = format!("<h1>page {n}</h1>\n{links}");
    let response = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    write_all(&mut stream, response.as_bytes())
}

fn read_request(stream: &mut TcpStream) -> io::Result<String> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                wait_readable(&stream, Some(Duration::from_secs(10)))?
            }
            Err(err) => return Err(err),
        }
    }
    Ok(String::from_utf8_lossy(&request).into_owned())
}

fn read_to_end(stream: &mut TcpStream) -> io::Result<String> {
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(String::from_utf8_lossy(&response).into_owned()),
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                wait_readable(&stream, Some(Duration::from_secs(10)))?
            }
            Err(err) => return Err(err),
        }
    }
}

fn write_all(stream: &mut TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match stream.write(data) {
            Ok(n) => data = &data[n..],
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                wait_writable(&stream, Some(Duration::from_secs(10)))?
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}
