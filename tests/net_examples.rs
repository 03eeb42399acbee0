//! The networking examples' own code, driven in-process by green clients: the echo
//! handler under the W7 load client, the HTTP hello-world (keep-alive, pipelining,
//! HTTP/1.0, bad input), and the chat room.

#![allow(dead_code)] // the examples' `main`s are included but not called here

#[path = "../examples/support/chat_room.rs"]
mod chat_room;
mod util;

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
    let server = StreamServer::new("127.0.0.1:0", http_hello::serve).unwrap();
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
    let pipelined = [&get[..], &get[..], b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"].concat();
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
    let post = b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    assert!(exchange(&server, post, false).ends_with("Hello, world!"));
    let response = exchange(&server, b"\x00\x01 not http\r\n\r\n", false);
    assert!(response.starts_with("HTTP/1.1 400 Bad Request"), "{response}");
    // A client that closes mid-request is simply dropped.
    assert_eq!(exchange(&server, b"GET / HTTP/1.1\r\nHost:", true), "");
    server.stop(None);
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
        let lines = BufReader::new(stream.try_clone().unwrap()).lines();
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
    assert_eq!(reader.get().unwrap().0, LINES, "the listener got every line");
    assert_eq!(talker.next_line(), "* sleeper left", "the sleeper was disconnected");
    server.stop(Some(Duration::from_millis(100)));
}
