//! A tiny DNS server for tests and the `dns_mass_resolve` example, on two plain threads
//! (UDP and TCP on one port), answering from rules rather than a zone:
//!
//! * `hostN.test` → `A 10.x.y.z` with `N = x·65536 + y·256 + z`, no `AAAA`;
//! * `big.test` → 200 `A` records (10.9.0.0..): too many for UDP, so over UDP the answer
//!   is empty and truncated, and only TCP gives them;
//! * anything else → `NXDOMAIN`.
//!
//! UDP answers can be held back by a fixed delay (a third thread sends them when due), to
//! stand for a real server's round trip.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

/// The running server: its address and how many queries each transport got.
#[derive(Clone, Debug)]
pub struct DnsServer {
    pub addr: SocketAddr,
    pub udp_queries: Arc<AtomicU64>,
    pub tcp_queries: Arc<AtomicU64>,
}

/// The address `hostN.test` has.
pub fn address_of(n: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

/// Starts the server on a free port of 127.0.0.1; it runs until the process ends.
pub fn start() -> io::Result<DnsServer> {
    start_with_delay(Duration::ZERO)
}

/// Like [`start`], sending each UDP answer `delay` after its query came.
pub fn start_with_delay(delay: Duration) -> io::Result<DnsServer> {
    let (udp, tcp) = bind_both()?;
    let addr = udp.local_addr()?;
    let server = DnsServer { addr, udp_queries: Arc::default(), tcp_queries: Arc::default() };
    let counted = server.udp_queries.clone();
    let (due, replies) = mpsc::channel::<(Instant, Vec<u8>, SocketAddr)>();
    let sender = udp.try_clone()?;
    std::thread::spawn(move || {
        // The delay is the same for all, so replies fall due in the order they came.
        for (at, reply, peer) in replies {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            let _ = sender.send_to(&reply, peer);
        }
    });
    std::thread::spawn(move || serve_udp(&udp, &counted, delay, &due));
    let counted = server.tcp_queries.clone();
    std::thread::spawn(move || serve_tcp(&tcp, &counted));
    Ok(server)
}

/// A UDP socket and a TCP listener on one free port: the kernel picks a free UDP port,
/// whose TCP twin may be taken (by some connection's local end); then another is tried.
fn bind_both() -> io::Result<(UdpSocket, TcpListener)> {
    let mut tries = 0;
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        match TcpListener::bind(udp.local_addr()?) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(err) if err.kind() == io::ErrorKind::AddrInUse && tries < 100 => tries += 1,
            Err(err) => return Err(err),
        }
    }
}

fn serve_udp(
    socket: &UdpSocket,
    counted: &AtomicU64,
    delay: Duration,
    due: &mpsc::Sender<(Instant, Vec<u8>, SocketAddr)>,
) {
    let mut buf = [0u8; 512];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else { continue };
        counted.fetch_add(1, Ordering::Relaxed);
        let Some(reply) = answer(&buf[..n], true) else { continue };
        if delay.is_zero() {
            let _ = socket.send_to(&reply, peer);
        } else {
            let _ = due.send((Instant::now() + delay, reply, peer));
        }
    }
}

fn serve_tcp(listener: &TcpListener, counted: &AtomicU64) {
    for stream in listener.incoming().flatten() {
        let mut stream = stream;
        let _ = (|| -> io::Result<()> {
            let mut length = [0u8; 2];
            stream.read_exact(&mut length)?;
            let mut query = vec![0u8; usize::from(u16::from_be_bytes(length))];
            stream.read_exact(&mut query)?;
            counted.fetch_add(1, Ordering::Relaxed);
            if let Some(reply) = answer(&query, false) {
                let length = (reply.len() as u16).to_be_bytes();
                stream.write_all(&[&length[..], &reply].concat())?;
            }
            Ok(())
        })();
    }
}

/// The reply to one query, or `None` for something that is not a query.
fn answer(query: &[u8], over_udp: bool) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let question = query.queries().first()?.clone();
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .add_query(question.clone());
    let name = question.name().to_ascii().to_ascii_lowercase();
    let a = |ip: Ipv4Addr| Record::from_rdata(question.name().clone(), 60, RData::A(A(ip)));
    let is_a = question.query_type() == RecordType::A;
    if let Some(n) = name.strip_prefix("host").and_then(|rest| rest.strip_suffix(".test.")) {
        match n.parse::<u32>() {
            Ok(n) if is_a => drop(reply.add_answer(a(address_of(n)))),
            Ok(_) => {} // no AAAA
            Err(_) => drop(reply.set_response_code(ResponseCode::NXDomain)),
        }
    } else if name == "big.test." {
        if over_udp {
            reply.set_truncated(true);
        } else if is_a {
            reply.add_answers((0..200u32).map(|i| a(Ipv4Addr::new(10, 9, 0, i as u8))));
        }
    } else {
        reply.set_response_code(ResponseCode::NXDomain);
    }
    reply.to_vec().ok()
}
