//! The networking examples' own code, driven in-process by green clients: the echo
//! handler under the W7 load client, the HTTP hello-world (keep-alive, pipelining,
//! HTTP/1.0, bad input), and the chat room.

#![allow(dead_code)] // the examples' `main`s are included but not called here

#[path = "../examples/support/chat_room.rs"]
mod chat_room;
use verdant_testutil as util;

#[path = "../examples/support/echo.rs"]
mod echo;
#[path = "../examples/http_hello.rs"]
mod http_hello;
#[path = "../examples/support/tcp_load.rs"]
mod tcp_load;

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use verdant::net::TcpStream;
use verdant::server::StreamServer;
use verdant::spawn;

#[test]
fn the_load_client_measures_the_echo_server() {
    let server = StreamServer::new("127.0.0.1:0", echo::echo).unwrap();
    server.start().unwrap();
    let load = tcp_load::Load { connections: 10, messages: 200, size: 64 };
    let report = tcp_load::run(server.local_addr(), load, Some(std::process::id())).unwrap();
    assert_eq!(report.messages, 2000);
    assert!(report.p50 <= report.p99 && report.p99 > Duration::ZERO, "{report:?}");
    assert!(report.messages_per_second() > 0.0);
    assert!(report.server_cpu.is_some());
    server.stop(None);
    assert_eq!(server.stats().accepted, 10);
    assert_eq!(server.stats().handler_errors, 0);
}

fn http_server() -> StreamServer {
    http_server_with(http_hello::Timeouts::default())
}

fn http_server_with(timeouts: http_hello::Timeouts) -> StreamServer {
    let server = http_hello::server("127.0.0.1:0", timeouts).unwrap();
    server.start().unwrap();
    server
}

/// Sends `request` bytes, then reads until the server closes.
fn exchange(server: &StreamServer, request: &[u8], close_after: bool) -> String {
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.write_all(request).unwrap();
    if close_after {
        stream.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn http_hello_keeps_connections_alive_and_answers_pipelined_requests() {
    let server = http_server();
    let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for _ in 0..3 {
        stream.write_all(get).unwrap(); // one at a time on one connection
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK\r\n");
        let mut rest =
            vec![0; "Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!".len()];
        reader.read_exact(&mut rest).unwrap();
        assert!(rest.ends_with(b"\r\n\r\nHello, world!"));
    }
    // Three pipelined in one write, the last asking to close.
    let pipelined =
        [&get[..], &get[..], b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"].concat();
    let response = exchange(&server, &pipelined, false);
    assert_eq!(response.matches("Hello, world!").count(), 3, "{response}");
    assert!(response.ends_with("Connection: close\r\n\r\nHello, world!"), "{response}");
    server.stop(None);
}

#[test]
fn http_hello_handles_http_1_0_bodies_and_garbage() {
    let server = http_server();
    let response = exchange(&server, b"GET / HTTP/1.0\r\n\r\n", false);
    assert!(response.starts_with("HTTP/1.1 200 OK") && response.contains("Connection: close"));
    let post =
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    assert!(exchange(&server, post, false).ends_with("Hello, world!"));
    let response = exchange(&server, b"\x00\x01 not http\r\n\r\n", false);
    assert!(response.starts_with("HTTP/1.1 400 Bad Request"), "{response}");
    // A client that closes mid-request is simply dropped.
    assert_eq!(exchange(&server, b"GET / HTTP/1.1\r\nHost:", true), "");
    server.stop(None);
    assert_eq!(server.stats().handler_errors, 0);
}

/// Sends `head`, then up to `body` bytes of body in another greenlet (stopping at the
/// first error), and reads until the server closes. Returns the response and how many
/// body bytes were sent.
fn exchange_streaming(server: &StreamServer, head: &[u8], body: usize) -> (String, usize) {
    let stream = std::rc::Rc::new(TcpStream::connect(server.local_addr()).unwrap());
    (&*stream).write_all(head).unwrap();
    let sender = spawn({
        let stream = stream.clone();
        move || {
            let chunk = [b'x'; 64 * 1024];
            let mut sent = 0;
            while sent < body {
                match (&*stream).write(&chunk[..chunk.len().min(body - sent)]) {
                    Ok(n) => sent += n,
                    Err(_) => break, // the server closed
                }
            }
            sent
        }
    });
    stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let mut response = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match (&*stream).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(err) => panic!("no close from the server: {err}"),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both); // ends the sender if still writing
    (String::from_utf8_lossy(&response).into_owned(), sender.get().unwrap())
}

/// How long a test waits for something that must happen before calling it a hang.
const HANG_GUARD: Duration = Duration::from_secs(30);

#[test]
fn http_hello_refuses_smuggling_and_oversized_requests_and_closes() {
    let server = http_server();
    let status_of = |head: &str| {
        let (response, _) = exchange_streaming(&server, head.as_bytes(), 0);
        let statuses: Vec<&str> = response.matches("HTTP/1.1 ").collect();
        assert_eq!(statuses.len(), 1, "one response, then the close: {response:?}");
        response.split("\r\n").next().unwrap().to_string()
    };
    // A length that wraps the sum must not turn the body into a second request.
    let smuggled = "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n\
                    GET /admin HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(status_of(smuggled), "HTTP/1.1 413 Content Too Large");
    let differing =
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
    assert_eq!(status_of(differing), "HTTP/1.1 400 Bad Request");
    let chunked = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(status_of(chunked), "HTTP/1.1 501 Not Implemented");
    let long_head = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(status_of(&long_head), "HTTP/1.1 431 Request Header Fields Too Large");
    assert_eq!(status_of("GET / HTTP/1.1\r\n\r\n"), "HTTP/1.1 400 Bad Request"); // no Host

    // A terabyte body is refused from its head, and not read: the client cannot send it.
    const BODY: usize = 64 << 20;
    let head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n";
    let (response, sent) = exchange_streaming(&server, head, BODY);
    assert!(response.starts_with("HTTP/1.1 413 Content Too Large\r\n"), "{response:?}");
    assert!(sent < BODY, "the server must stop reading a body it refused ({sent} bytes sent)");

    let ok = exchange(&server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false);
    assert!(ok.ends_with("Hello, world!"), "{ok}");
    server.stop(None);
    assert_eq!(server.stats().handler_errors, 0);
}

#[test]
fn http_hello_closes_slow_and_silent_connections_after_its_timeouts() {
    let short = Duration::from_millis(200);
    let server = http_server_with(http_hello::Timeouts { request: short, idle: short });
    let addr = server.local_addr();
    let read_all = |stream: TcpStream| {
        spawn(move || {
            stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
            let mut response = String::new();
            (&stream).read_to_string(&mut response).map(|_| response)
        })
    };
    // Slowloris: half a head, then nothing.
    let slowloris = TcpStream::connect(addr).unwrap();
    (&slowloris).write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Wait: ").unwrap();
    let slowloris = read_all(slowloris);
    // Silent: connects and sends nothing.
    let silent = read_all(TcpStream::connect(addr).unwrap());
    // Idle: one request on a keep-alive connection, then nothing.
    let idle = TcpStream::connect(addr).unwrap();
    (&idle).write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let idle = read_all(idle);

    let response = slowloris.take().unwrap().expect("closed, not hung");
    assert!(response.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{response:?}");
    assert_eq!(silent.take().unwrap().expect("closed, not hung"), "");
    let response = idle.take().unwrap().expect("closed, not hung");
    assert!(response.starts_with("HTTP/1.1 200 OK") && response.ends_with("Hello, world!"));
    server.stop(None);
    assert_eq!(server.stats().timed_out, 3);
    assert_eq!(server.stats().handler_errors, 0);
}

/// A chat client: sends its name, then reads lines.
struct Chatter {
    stream: TcpStream,
    lines: std::io::Lines<BufReader<TcpStream>>,
}

impl Chatter {
    fn join(server: &StreamServer, name: &str) -> Chatter {
        let mut stream = TcpStream::connect(server.local_addr()).unwrap();
        stream.write_all(format!("{name}\n").as_bytes()).unwrap();
        let reading = stream.try_clone().unwrap();
        reading.set_read_timeout(Some(HANG_GUARD)).unwrap(); // a hang fails the test
        let lines = BufReader::new(reading).lines();
        let mut chatter = Chatter { stream, lines };
        let welcome = chatter.next_line();
        assert!(welcome.starts_with("Welcome! Your name? *"), "{welcome}");
        chatter
    }

    fn say(&mut self, text: &str) {
        self.stream.write_all(format!("{text}\n").as_bytes()).unwrap();
    }

    fn next_line(&mut self) -> String {
        self.lines.next().unwrap().unwrap()
    }
}

#[test]
fn the_chat_room_broadcasts_to_everyone_else() {
    let room = chat_room::Room::new();
    let server =
        StreamServer::new("127.0.0.1:0", move |stream, _| chat_room::serve(&room, stream)).unwrap();
    server.start().unwrap();
    let mut alice = Chatter::join(&server, "alice");
    let mut bob = Chatter::join(&server, "bob");
    assert_eq!(alice.next_line(), "* bob joined");
    let mut carol = Chatter::join(&server, "carol");
    assert_eq!(alice.next_line(), "* carol joined");
    assert_eq!(bob.next_line(), "* carol joined");
    alice.say("hello all");
    assert_eq!(bob.next_line(), "alice: hello all");
    assert_eq!(carol.next_line(), "alice: hello all");
    bob.say("/who");
    assert_eq!(bob.next_line(), "* here: alice, bob, carol");
    carol.say("/quit");
    assert_eq!(alice.next_line(), "* carol left");
    assert_eq!(bob.next_line(), "* carol left");
    assert!(carol.lines.next().is_none(), "carol's connection is closed");
    drop(bob); // hangs up without /quit
    assert_eq!(alice.next_line(), "* bob left");
    server.stop(None);
}

#[test]
fn a_chat_member_that_never_reads_is_disconnected_without_stalling_the_room() {
    let room = chat_room::Room::new();
    let server =
        StreamServer::new("127.0.0.1:0", move |stream, _| chat_room::serve(&room, stream)).unwrap();
    server.start().unwrap();
    let sleeper = Chatter::join(&server, "sleeper"); // never reads again
    // A small receive buffer: a client that does not read is soon behind.
    util::set_socket_option(&sleeper.stream, libc::SO_RCVBUF, &(4096 as libc::c_int));
    let mut talker = Chatter::join(&server, "talker");
    let mut listener = Chatter::join(&server, "listener");
    assert_eq!(talker.next_line(), "* listener joined");
    const LINES: usize = 10_000; // 10 MB: more than the sleeper's socket buffers hold
    // The talker sends in batches and waits until the listener has read each one, so the
    // listener's inbox (100 lines) never fills: the room's 500 ms slow-client timeout must
    // fire for the sleeper only, never for the listener, however loaded the machine is.
    const BATCH: usize = 20;
    let line = "x".repeat(1000);
    let batches_read = verdant::sync::Queue::new();
    let reader = spawn({
        let batches_read = batches_read.clone();
        move || {
            let mut got = 0;
            while got < LINES {
                if listener.next_line().starts_with("talker: ") {
                    got += 1;
                    if got % BATCH == 0 {
                        batches_read.put(got).unwrap();
                    }
                }
            }
            (got, listener) // keep the connection open
        }
    });
    for batch in 1..=LINES / BATCH {
        if batch > 2 {
            // At most two batches ahead of the listener: 40 lines, less than its inbox.
            assert_eq!(batches_read.get(), Ok((batch - 2) * BATCH));
        }
        for _ in 0..BATCH {
            talker.say(&line);
        }
    }
    assert_eq!(reader.take().unwrap().0, LINES, "the listener got every line");
    assert_eq!(talker.next_line(), "* sleeper left", "the sleeper was disconnected");
    server.stop(Some(Duration::from_millis(100)));
}

fn chat_server() -> StreamServer {
    let room = chat_room::Room::new();
    let server =
        StreamServer::new("127.0.0.1:0", move |stream, _| chat_room::serve(&room, stream)).unwrap();
    server.start().unwrap();
    server
}

#[test]
fn an_over_long_chat_line_is_refused_and_the_room_goes_on() {
    let server = chat_server();
    let mut alice = Chatter::join(&server, "alice");
    let mut mallory = Chatter::join(&server, "mallory");
    assert_eq!(alice.next_line(), "* mallory joined");
    // Mallory sends a line with no end; the server must stop reading it early.
    const SENT: usize = 64 << 20;
    let stream = std::rc::Rc::new(mallory.stream.try_clone().unwrap());
    let sender = spawn({
        let stream = stream.clone();
        move || {
            let chunk = [b'x'; 64 * 1024];
            let mut sent = 0;
            while sent < SENT {
                match (&*stream).write(&chunk) {
                    Ok(n) => sent += n,
                    Err(_) => break, // the server closed
                }
            }
            sent
        }
    });
    let mut told = Vec::new();
    for line in mallory.lines.by_ref() {
        match line {
            Ok(line) => told.push(line),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(err) => panic!("the server did not close mallory's connection: {err} {told:?}"),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    assert_eq!(told.last().map(|l| format!("{l}\n")), Some(chat_room::too_long()), "{told:?}");
    assert!(sender.get().unwrap() < SENT, "the server stopped reading the over-long line");
    assert_eq!(alice.next_line(), "* mallory left");
    let mut bob = Chatter::join(&server, "bob");
    assert_eq!(alice.next_line(), "* bob joined");
    alice.say("still here");
    assert_eq!(bob.next_line(), "alice: still here");
    server.stop(Some(Duration::from_millis(100)));
}

/// Twenty members (here a hundred) that never read used to stall every broadcast 0.5 s
/// per member in turn (50 s here, far beyond the hang guard); with one deadline per
/// broadcast they cost 0.5 s once, and are all disconnected.
#[test]
fn members_that_never_read_do_not_hold_back_a_member_that_does() {
    const NON_READERS: usize = 100;
    const LINES: usize = 800;
    let room = chat_room::Room::new();
    let server = StreamServer::new("127.0.0.1:0", move |stream: TcpStream, _| {
        // Small kernel buffers: a member that does not read is soon behind.
        util::set_socket_option(&stream, libc::SO_SNDBUF, &(4096 as libc::c_int));
        chat_room::serve(&room, stream)
    })
    .unwrap();
    server.start().unwrap();
    let mut listener = Chatter::join(&server, "listener");
    let non_readers: Vec<Chatter> = (0..NON_READERS)
        .map(|i| {
            let chatter = Chatter::join(&server, &format!("sleeper{i}"));
            util::set_socket_option(&chatter.stream, libc::SO_RCVBUF, &(4096 as libc::c_int));
            chatter
        })
        .collect();
    let mut talker = Chatter::join(&server, "talker");
    let reader = spawn(move || {
        let (mut got, mut left) = (0, 0);
        while got < LINES || left < NON_READERS {
            let line = listener.next_line();
            got += usize::from(line.starts_with("talker: "));
            left += usize::from(line.starts_with("* sleeper") && line.ends_with(" left"));
        }
        (got, left, listener)
    });
    let line = "x".repeat(1000);
    let talking = spawn(move || {
        for _ in 0..LINES {
            talker.say(&line);
        }
        talker
    });
    assert!(reader.join_timeout(Duration::from_secs(20)), "the listener was held back");
    let (got, left, _listener) = reader.take().unwrap();
    assert_eq!((got, left), (LINES, NON_READERS), "every line, and every sleeper disconnected");
    drop((non_readers, talking));
    server.stop(Some(Duration::from_millis(100)));
}

/// A client that resets the connection (`SO_LINGER` 0, as wrk and crashed clients do)
/// has simply left: the examples must not report it as an error, or a few hundred such
/// clients flood the error report.
#[test]
fn clients_that_reset_are_a_normal_close_in_every_example() {
    let echo = StreamServer::new("127.0.0.1:0", echo::echo).unwrap();
    echo.start().unwrap();
    let http = http_server();
    let chat = chat_server();
    for _ in 0..3 {
        let mut client = TcpStream::connect(echo.local_addr()).unwrap();
        client.write_all(b"ping").unwrap();
        client.read_exact(&mut [0; 4]).unwrap();
        util::set_linger_zero(&client);

        let mut client = TcpStream::connect(http.local_addr()).unwrap();
        client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut reader = BufReader::new(client.try_clone().unwrap());
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK\r\n");
        util::set_linger_zero(&client);

        let chatter = Chatter::join(&chat, "resetter");
        util::set_linger_zero(&chatter.stream);
    } // each client is dropped here: a reset
    for server in [echo, http, chat] {
        server.stop(Some(HANG_GUARD)); // the handlers end on the reset, so this is quick
        assert_eq!(server.stats().accepted, 3);
        assert_eq!(server.stats().handler_errors, 0, "{server:?}");
    }
}
