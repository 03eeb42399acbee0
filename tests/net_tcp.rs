//! Green TCP: every `TcpListener`/`TcpStream` method, timeouts, interruption, and peers
//! that reset, half-close or stall. Loopback only.

use verdant_testutil as util;

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use verdant::WaitFor;
use verdant::net::{TcpListener, TcpStream, lookup_host};
use verdant::{GreenletError, sleep, spawn, with_timeout, yield_now};

use util::Log;

/// A connected pair: (client side, server side).
fn connected_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

#[test]
fn accept_and_connect_agree_on_addresses() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST);
    assert_ne!(addr.port(), 0);
    let client = TcpStream::connect(addr).unwrap();
    let (server, peer) = listener.accept().unwrap();
    assert_eq!(client.peer_addr().unwrap(), addr);
    assert_eq!(peer, client.local_addr().unwrap());
    assert_eq!(server.peer_addr().unwrap(), client.local_addr().unwrap());
    assert_eq!(server.local_addr().unwrap(), addr);
}

#[test]
fn accept_blocks_only_the_calling_greenlet() {
    let log = Log::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = spawn({
        let log = log.clone();
        move || {
            log.push("accepting");
            let (_stream, _) = listener.accept().unwrap();
            log.push("accepted");
        }
    });
    yield_now(); // the acceptor parks in accept
    log.push("main runs while accept waits");
    let _client = TcpStream::connect(addr).unwrap();
    acceptor.get().unwrap();
    assert_eq!(log.take(), ["accepting", "main runs while accept waits", "accepted"]);
}

#[test]
fn incoming_yields_each_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let clients: Vec<_> = (0..3u8)
        .map(|i| {
            spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.write_all(&[i]).unwrap();
            })
        })
        .collect();
    let mut seen: Vec<u8> = listener
        .incoming()
        .take(3)
        .map(|stream| {
            let mut byte = [0];
            stream.unwrap().read_exact(&mut byte).unwrap();
            byte[0]
        })
        .collect();
    seen.sort();
    assert_eq!(seen, [0, 1, 2]);
    assert_eq!(verdant::joinall(&clients, WaitFor::all()).len(), clients.len());
    assert!(clients.iter().all(|c| c.successful()));
}

#[test]
fn connecting_to_a_closed_port_is_refused() {
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // dropped
    let err = TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
}

#[test]
fn connect_tries_every_resolved_address() {
    // "localhost" may resolve to ::1 first, where nothing listens: the IPv4 address
    // must still be tried.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = TcpStream::connect(("localhost", port)).unwrap();
    assert_eq!(client.peer_addr().unwrap().port(), port);
    let _ = listener.accept().unwrap();
}

#[test]
fn connect_timeout_gives_up_when_the_listener_drops_syns() {
    // A listener whose accept queue is full drops SYNs: connects then hang until the
    // client gives up.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_backlog(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut kept = Vec::new();
    let timed_out =
        (0..8).find_map(|_| match TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(stream) => {
                kept.push(stream);
                None
            }
            Err(err) => Some(err),
        });
    let err = timed_out.expect("a connect to a full accept queue must time out");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    // The listener still works: accept what was queued.
    let (_stream, _) = listener.accept().unwrap();
}

#[test]
fn connect_timeout_connects_when_the_listener_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    assert_eq!(stream.peer_addr().unwrap(), addr);
}

#[test]
fn a_megabyte_each_way_at_once() {
    // Both sides write more than the socket buffers hold while the other side also
    // writes: only works if a blocked write lets the peer's reader run.
    const LEN: usize = 1 << 20;
    let (client, server) = connected_pair();
    let pattern = |i: usize| (i % 251) as u8;
    let echo_side = |stream: TcpStream| {
        spawn(move || {
            let stream = Rc::new(stream);
            let writer = spawn({
                let stream = stream.clone();
                move || {
                    let data: Vec<u8> = (0..LEN).map(pattern).collect();
                    (&*stream).write_all(&data).unwrap();
                }
            });
            let mut received = vec![0; LEN];
            (&*stream).read_exact(&mut received).unwrap();
            writer.get().unwrap();
            received.iter().enumerate().all(|(i, &b)| b == pattern(i))
        })
    };
    let a = echo_side(client);
    let b = echo_side(server);
    assert!(a.get().unwrap());
    assert!(b.get().unwrap());
}

#[test]
fn a_read_timeout_returns_timed_out_and_the_stream_stays_usable() {
    let (mut client, mut server) = connected_pair();
    client.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
    assert_eq!(client.read_timeout().unwrap(), Some(Duration::from_millis(30)));
    let start = Instant::now();
    let err = client.read(&mut [0; 8]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(start.elapsed() >= Duration::from_millis(30));
    server.write_all(b"late").unwrap();
    let mut buf = [0; 4];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"late");
}

#[test]
fn a_write_timeout_returns_timed_out_and_the_stream_stays_usable() {
    let (mut client, mut server) = connected_pair();
    client.set_write_timeout(Some(Duration::from_millis(30))).unwrap();
    assert_eq!(client.write_timeout().unwrap(), Some(Duration::from_millis(30)));
    // Nobody reads: the buffers fill and a write must time out.
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0usize;
    let err = loop {
        match client.write(&chunk) {
            Ok(n) => written += n,
            Err(err) => break err,
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    // Drain what was written; then writing works again.
    let mut sink = vec![0; written];
    server.read_exact(&mut sink).unwrap();
    client.write_all(b"!").unwrap();
    let mut last = [0];
    server.read_exact(&mut last).unwrap();
    assert_eq!(last, *b"!");
}

#[test]
fn a_zero_timeout_is_rejected_as_in_std() {
    let (client, _server) = connected_pair();
    let err = client.set_read_timeout(Some(Duration::ZERO)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let err = client.set_write_timeout(Some(Duration::ZERO)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(client.read_timeout().unwrap(), None);
}

#[test]
fn with_timeout_interrupts_a_blocked_read() {
    let (mut client, mut server) = connected_pair();
    let result = with_timeout(Duration::from_millis(20), || client.read(&mut [0; 8]));
    assert!(result.is_err(), "the read must have been interrupted");
    // The interrupted stream still works.
    server.write_all(b"after").unwrap();
    let mut buf = [0; 5];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"after");
}

#[test]
fn with_timeout_interrupts_a_blocked_accept_and_a_blocked_write() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    assert!(with_timeout(Duration::from_millis(10), || listener.accept()).is_err());
    let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    listener.accept().unwrap(); // still accepts afterwards

    let (mut client, mut server) = connected_pair();
    let chunk = vec![1u8; 64 * 1024];
    let written = std::cell::Cell::new(0);
    let outcome = with_timeout(Duration::from_millis(20), || {
        loop {
            // Nobody reads: this ends up blocked.
            written.set(written.get() + client.write(&chunk).unwrap());
        }
    });
    assert!(outcome.is_err());
    assert!(written.get() > 0);
    let mut sink = vec![0; written.get()];
    server.read_exact(&mut sink).unwrap();
    client.write_all(b"!").unwrap();
}

#[test]
fn killing_a_greenlet_blocked_in_read_leaves_the_stream_usable() {
    let (client, mut server) = connected_pair();
    let client = Rc::new(client);
    let reader = spawn({
        let client = client.clone();
        move || (&*client).read(&mut [0; 8]).map(|_| ())
    });
    yield_now();
    reader.kill();
    assert_eq!(reader.take().unwrap_err(), GreenletError::Killed);
    server.write_all(b"x").unwrap();
    let mut byte = [0];
    (&*client).read_exact(&mut byte).unwrap();
    assert_eq!(byte, *b"x");
}

#[test]
fn half_close_delivers_eof_and_the_other_direction_goes_on() {
    let (mut client, mut server) = connected_pair();
    client.write_all(b"request").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut request = Vec::new();
    server.read_to_end(&mut request).unwrap(); // ends at the half-close
    assert_eq!(request, b"request");
    server.write_all(b"response").unwrap();
    drop(server);
    let mut response = Vec::new();
    client.read_to_end(&mut response).unwrap();
    assert_eq!(response, b"response");
}

#[test]
fn eof_arriving_in_the_same_event_as_the_last_data_is_seen() {
    // The data and the FIN come in one readiness event; after a short read drains the
    // data, the next read must see EOF instead of waiting for an event that never comes.
    let (mut client, mut server) = connected_pair();
    client.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    assert_eq!(client.read(&mut [0; 8]).unwrap_err().kind(), io::ErrorKind::TimedOut);
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    server.write_all(b"last words").unwrap();
    server.shutdown(Shutdown::Write).unwrap();
    let mut all = String::new();
    client.read_to_string(&mut all).unwrap();
    assert_eq!(all, "last words");
}

#[test]
fn shutdown_read_makes_reads_return_eof() {
    let (mut client, _server) = connected_pair();
    client.shutdown(Shutdown::Read).unwrap();
    assert_eq!(client.read(&mut [0; 4]).unwrap(), 0);
}

#[test]
fn a_reset_wakes_a_blocked_reader_with_an_error() {
    let (mut client, server) = connected_pair();
    let reader = spawn(move || client.read(&mut [0; 8]));
    yield_now(); // parked in read
    util::set_linger_zero(&server);
    drop(server); // RST
    let err = reader.take().unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
}

#[test]
fn writing_to_a_reset_connection_fails() {
    let (mut client, server) = connected_pair();
    util::set_linger_zero(&server);
    drop(server);
    sleep(Duration::from_millis(5)); // let the RST arrive
    let err = (0..100).find_map(|_| client.write(&[0; 1024]).err()).expect("a write must fail");
    assert!(
        matches!(err.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe),
        "{err:?}"
    );
}

#[test]
fn a_peer_that_stalls_mid_message_times_out_only_its_reader() {
    let (mut stalled_client, mut stalled_server) = connected_pair();
    let (mut good_client, mut good_server) = connected_pair();
    stalled_server.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let stalled = spawn(move || {
        let mut message = [0; 10];
        stalled_server.read_exact(&mut message)
    });
    let good = spawn(move || {
        let mut message = [0; 10];
        good_server.read_exact(&mut message).map(|()| message)
    });
    stalled_client.write_all(b"half!").unwrap(); // 5 of 10 bytes, then nothing
    good_client.write_all(b"0123456789").unwrap();
    assert_eq!(good.take().unwrap().unwrap(), *b"0123456789");
    let err = stalled.take().unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
}

#[test]
fn nodelay_and_ttl_round_trip() {
    let (client, _server) = connected_pair();
    client.set_nodelay(true).unwrap();
    assert!(client.nodelay().unwrap());
    client.set_nodelay(false).unwrap();
    assert!(!client.nodelay().unwrap());
    client.set_ttl(42).unwrap();
    assert!(client.take_error().unwrap().is_none());
}

#[test]
fn peek_leaves_the_data_queued() {
    let (client, mut server) = connected_pair();
    server.write_all(b"peekaboo").unwrap();
    let mut buf = [0; 4];
    let n = client.peek(&mut buf).unwrap();
    assert_eq!(&buf[..n], &b"peekaboo"[..n]);
    let mut all = [0; 8];
    (&client).read_exact(&mut all).unwrap();
    assert_eq!(&all, b"peekaboo");
}

#[test]
fn a_clone_reads_while_the_original_writes() {
    let (client, server) = connected_pair();
    let reader_half = client.try_clone().unwrap();
    let echo = spawn(move || {
        let mut server = server;
        let mut buf = [0; 3];
        for _ in 0..3 {
            server.read_exact(&mut buf).unwrap();
            server.write_all(&buf).unwrap();
        }
    });
    let reader = spawn(move || {
        let mut reader_half = reader_half;
        let mut got = Vec::new();
        let mut buf = [0; 9];
        reader_half.read_exact(&mut buf).unwrap();
        got.extend_from_slice(&buf);
        got
    });
    let mut writer = client;
    for word in [b"one", b"two", b"six"] {
        writer.write_all(word).unwrap();
    }
    assert_eq!(reader.get().unwrap(), b"onetwosix");
    echo.get().unwrap();
}

#[test]
fn read_and_write_through_shared_references() {
    let (client, server) = connected_pair();
    let client = Rc::new(client);
    let reader = spawn({
        let client = client.clone();
        move || {
            let mut buf = [0; 5];
            (&*client).read_exact(&mut buf).unwrap();
            buf
        }
    });
    let writer = spawn({
        let client = client.clone();
        move || (&*client).write_all(b"ping!").unwrap()
    });
    let mut server = server;
    let mut buf = [0; 5];
    server.read_exact(&mut buf).unwrap();
    server.write_all(&buf).unwrap();
    writer.get().unwrap();
    assert_eq!(&reader.get().unwrap(), b"ping!");
}

#[test]
fn vectored_io_gathers_and_scatters() {
    let (mut client, mut server) = connected_pair();
    let n = client.write_vectored(&[IoSlice::new(b"head"), IoSlice::new(b"tail")]).unwrap();
    assert_eq!(n, 8);
    let (mut a, mut b) = ([0; 4], [0; 4]);
    let mut got = 0;
    while got < 8 {
        let mut bufs = [IoSliceMut::new(&mut a[got.min(4)..]), IoSliceMut::new(&mut b)];
        got += server.read_vectored(&mut bufs).unwrap();
        if got < 8 {
            yield_now();
        }
    }
    assert_eq!((&a, &b), (b"head", b"tail"));
}

#[test]
fn into_std_and_from_std_round_trip() {
    let (client, mut server) = connected_pair();
    let std_stream = client.into_std();
    let mut client = TcpStream::from_std(std_stream).unwrap();
    client.write_all(b"again").unwrap();
    let mut buf = [0; 5];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"again");

    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let listener = TcpListener::from_std(std_listener).unwrap();
    let _client = TcpStream::connect(addr).unwrap();
    assert_eq!(listener.accept().unwrap().0.local_addr().unwrap(), addr);
}

#[test]
fn accept_timeout_returns_timed_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_accept_timeout(Some(Duration::from_millis(20))).unwrap();
    assert_eq!(listener.accept().unwrap_err().kind(), io::ErrorKind::TimedOut);
    assert!(listener.take_error().unwrap().is_none());
    listener.set_ttl(16).unwrap();
}

#[test]
fn every_greenlet_reading_one_socket_gets_a_share() {
    let (mut client, server) = connected_pair();
    let server = Rc::new(server);
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let server = server.clone();
            spawn(move || {
                let mut byte = [0];
                (&*server).read_exact(&mut byte).unwrap();
                byte[0]
            })
        })
        .collect();
    yield_now(); // all three park on the same socket
    client.write_all(&[1, 2, 3]).unwrap();
    let mut got: Vec<u8> = readers.iter().map(|r| r.get().unwrap()).collect();
    got.sort();
    assert_eq!(got, [1, 2, 3]);
}

#[test]
fn lookup_host_resolves_names_and_passes_addresses_through() {
    let addrs = lookup_host("localhost:8080").unwrap();
    assert!(!addrs.is_empty());
    assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 8080));
    let literal: SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert_eq!(lookup_host("127.0.0.1:9").unwrap(), [literal]);
    assert_eq!(lookup_host("no port here").unwrap_err().kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn streams_and_listeners_print_their_addresses() {
    let (client, _server) = connected_pair();
    let text = format!("{client:?}");
    assert!(text.starts_with("TcpStream") && text.contains("127.0.0.1"), "{text}");
}
