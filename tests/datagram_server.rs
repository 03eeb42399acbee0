//! `DatagramServer`: echo round trips counted exactly, a bounded pool bounds concurrent
//! handlers, stop stops receiving, handler errors are reported, too long datagrams are
//! dropped and counted, a handle keeps the last stats, the life cycle's rules (as for a
//! `StreamServer`); and the `udp_echo` example's handler.

#![allow(dead_code)] // the example's `main` is included but not called here

#[path = "../examples/udp_echo.rs"]
mod udp_echo;

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use verdant::net::UdpSocket;
use verdant::pool::Pool;
use verdant::server::{DatagramHandle, DatagramServer};
use verdant::sync::Event;
use verdant::{GreenletError, spawn, yield_now};

fn echo(data: &[u8], peer: SocketAddr, server: &DatagramHandle) -> io::Result<()> {
    server.send_to(data, peer).map(drop)
}

#[test]
fn echoes_many_datagrams_each_exactly_once() {
    let server = DatagramServer::new("127.0.0.1:0", echo).unwrap();
    server.start().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut replies = BTreeSet::new();
    let mut buf = [0; 64];
    // In windows of 10, so that the loopback receive buffers never overflow.
    for window in 0..30 {
        for i in 0..10 {
            client
                .send_to(format!("datagram {}", window * 10 + i).as_bytes(), server.local_addr())
                .unwrap();
        }
        for _ in 0..10 {
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(from, server.local_addr());
            assert!(replies.insert(String::from_utf8(buf[..n].to_vec()).unwrap()));
        }
    }
    let expected: BTreeSet<_> = (0..300).map(|i| format!("datagram {i}")).collect();
    assert_eq!(replies, expected);
    server.stop(None);
    let stats = server.stats();
    assert_eq!((stats.received, stats.active, stats.handler_errors), (300, 0, 0));
}

#[test]
fn a_bounded_pool_bounds_concurrent_handlers() {
    let (running, most, gate) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)), Event::new());
    let handler = {
        let (running, most, gate) = (running.clone(), most.clone(), gate.clone());
        move |data: &[u8], peer, server: &DatagramHandle| -> io::Result<()> {
            running.set(running.get() + 1);
            most.set(most.get().max(running.get()));
            gate.wait();
            running.set(running.get() - 1);
            server.send_to(data, peer).map(drop)
        }
    };
    let server = DatagramServer::new("127.0.0.1:0", handler).unwrap().with_pool(Pool::new(3));
    server.start().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..20u8 {
        client.send_to(&[i], server.local_addr()).unwrap();
    }
    while server.stats().active < 3 {
        yield_now();
    }
    for _ in 0..10 {
        yield_now(); // the receive loop waits for room: it takes nothing more
    }
    assert_eq!(server.stats().received, 3);
    gate.set();
    let mut got = BTreeSet::new();
    let mut buf = [0; 4];
    for _ in 0..20 {
        let (n, _) = client.recv_from(&mut buf).unwrap();
        got.insert(buf[..n].to_vec());
    }
    assert_eq!(got.len(), 20);
    assert_eq!(most.get(), 3);
    server.stop(None);
    assert_eq!(server.stats().received, 20);
}

#[test]
fn stop_stops_receiving_and_frees_the_port() {
    let server = DatagramServer::new("127.0.0.1:0", echo).unwrap();
    let serving = spawn({
        let server = server.clone();
        move || server.serve_forever()
    });
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"one", server.local_addr()).unwrap();
    let mut buf = [0; 8];
    assert_eq!(client.recv_from(&mut buf).unwrap().0, 3);
    server.stop(None);
    serving.take().unwrap().unwrap();
    assert!(server.is_closed() && !server.is_started());
    // The socket is closed: the port can be bound again, and nothing more is received.
    let rebound = UdpSocket::bind(server.local_addr()).unwrap();
    client.send_to(b"two", server.local_addr()).unwrap();
    assert_eq!(rebound.recv_from(&mut buf).unwrap().0, 3);
    assert_eq!(server.stats().received, 1);
    assert!(server.start().is_err());
}

#[test]
fn a_handler_stops_its_server_and_errors_are_reported_and_counted() {
    let errors: Rc<RefCell<Vec<String>>> = Rc::default();
    let server =
        DatagramServer::new("127.0.0.1:0", |data: &[u8], _peer, server: &DatagramHandle| {
            match data {
                b"stop" => server.stop(None),
                b"panic" => panic!("asked to"),
                _ => return Err(io::Error::other("bad datagram")),
            }
            Ok(())
        })
        .unwrap()
        .on_error({
            let errors = errors.clone();
            move |error| errors.borrow_mut().push(error.to_string())
        });
    let serving = spawn({
        let server = server.clone();
        move || server.serve_forever()
    });
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for message in [&b"bad"[..], b"panic", b"stop"] {
        client.send_to(message, server.local_addr()).unwrap();
    }
    serving.take().unwrap().unwrap();
    assert!(server.is_closed());
    assert_eq!(server.stats().received, 3);
    assert_eq!(server.stats().handler_errors, 2);
    let errors = errors.borrow();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].ends_with("failed: bad datagram"), "{errors:?}");
    assert!(errors[1].contains("panicked"), "{errors:?}");
}

#[test]
fn longer_datagrams_than_the_max_are_dropped_counted_and_reported_and_zero_is_refused() {
    let errors: Rc<RefCell<Vec<String>>> = Rc::default();
    let server =
        DatagramServer::new("127.0.0.1:0", echo).unwrap().with_max_datagram_size(4).on_error({
            let errors = errors.clone();
            move |error| errors.borrow_mut().push(error.to_string())
        });
    server.start().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    // In order over loopback: the echo of "ok" comes after the server saw the others.
    for message in ["four", "longer than four", "five!", "ok"] {
        client.send_to(message.as_bytes(), server.local_addr()).unwrap();
    }
    let mut buf = [0; 64];
    let mut replies = Vec::new();
    for _ in 0..2 {
        let (n, _) = client.recv_from(&mut buf).unwrap();
        replies.push(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    assert_eq!(replies, ["four", "ok"], "the long datagrams were not handed on cut");
    let stats = server.stats();
    assert_eq!((stats.received, stats.truncated, stats.handler_errors), (2, 2, 0));
    let errors = errors.borrow().clone();
    let client_addr = client.local_addr().unwrap();
    let expected = format!(
        "a datagram from {client_addr:?} was longer than max_datagram_size (4 bytes): dropped"
    );
    assert_eq!(errors, [expected.clone(), expected]);
    server.stop(None);

    let refused = std::panic::catch_unwind(|| {
        DatagramServer::new("127.0.0.1:0", echo).unwrap().with_max_datagram_size(0)
    });
    let message = *refused.unwrap_err().downcast::<&str>().unwrap();
    assert!(message.contains("max_datagram_size"), "{message}");
}

#[test]
fn a_handle_keeps_the_last_stats_once_its_server_is_gone() {
    let server = DatagramServer::new("127.0.0.1:0", echo).unwrap().with_max_datagram_size(4);
    let handle = server.handle();
    server.start().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for message in ["too long", "one", "two"] {
        client.send_to(message.as_bytes(), server.local_addr()).unwrap();
    }
    let mut buf = [0; 8];
    for _ in 0..2 {
        client.recv_from(&mut buf).unwrap();
    }
    server.stop(None);
    let last = server.stats();
    assert_eq!((last.received, last.truncated, last.active), (2, 1, 0));
    drop(server);
    assert!(handle.server().is_none(), "the server is gone");
    assert_eq!(handle.stats(), last);
}

#[test]
fn the_udp_echo_examples_handler_answers_with_the_length() {
    let server = DatagramServer::new("127.0.0.1:0", udp_echo::handle).unwrap();
    server.start().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut buf = [0; 64];
    for message in ["hello", "", "a longer datagram"] {
        client.send_to(message.as_bytes(), server.local_addr()).unwrap();
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            format!("Received {} bytes", message.len())
        );
    }
    server.stop(None);
    assert_eq!(server.stats().received, 3);
    assert_eq!(server.stats().handler_errors, 0);
}

#[test]
fn start_twice_or_after_close_is_an_error() {
    let server = DatagramServer::new("127.0.0.1:0", echo).unwrap();
    server.start().unwrap();
    assert_eq!(server.start().unwrap_err().kind(), io::ErrorKind::AlreadyExists);
    server.close();
    assert!(server.is_closed() && !server.is_started());
    assert_eq!(server.start().unwrap_err().kind(), io::ErrorKind::NotConnected);
    let text = format!("{server:?}");
    assert!(text.contains("closed: true"), "{text}");
}

#[test]
fn killing_serve_forever_stops_the_server() {
    let server = DatagramServer::new("127.0.0.1:0", echo).unwrap();
    let serving = spawn({
        let server = server.clone();
        move || server.serve_forever()
    });
    yield_now();
    assert!(server.is_started());
    serving.kill();
    assert_eq!(serving.take().unwrap_err(), GreenletError::Killed);
    // The stop runs in a greenlet of its own, as in gevent: one of the next turns.
    for _ in 0..100 {
        if server.is_closed() {
            break;
        }
        yield_now();
    }
    assert!(server.is_closed() && !server.is_started());
}

/// `close` from the serving greenlet itself (an `on_error` callback) closes the socket
/// before the kill unwinds that greenlet: the port is free and the server stays closed.
#[test]
fn on_error_closing_its_own_server_closes_it() {
    let handle: Rc<RefCell<Option<DatagramHandle>>> = Rc::default();
    let reported = Event::new();
    let server =
        DatagramServer::new("127.0.0.1:0", echo).unwrap().with_max_datagram_size(4).on_error({
            let (handle, reported) = (handle.clone(), reported.clone());
            move |_| {
                reported.set();
                handle.borrow().as_ref().expect("set before start").close();
            }
        });
    *handle.borrow_mut() = Some(server.handle());
    server.start().unwrap();
    let addr = server.local_addr();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"longer than four", addr).unwrap();
    reported.wait();
    yield_now(); // the serving greenlet finishes closing, then its kill unwinds it
    assert!(server.is_closed());
    handle.borrow_mut().take(); // a handle keeps the socket for replies of handlers in flight
    UdpSocket::bind(addr).expect("the port is free again");
    assert!(server.start().is_err(), "a closed server does not start again");
}
