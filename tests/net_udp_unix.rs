//! Green UDP and Unix-domain sockets, and `wait_readable`/`wait_writable` re-exported
//! from `verdant::net`.

use verdant_testutil as util;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use verdant::net::{UdpSocket, UnixListener, UnixStream, wait_readable, wait_writable};
use verdant::{spawn, with_timeout, yield_now};

use util::Log;

/// A fresh socket path in the temp dir, removed when dropped.
struct SocketPath(PathBuf);

impl SocketPath {
    fn new(tag: &str) -> SocketPath {
        let path =
            std::env::temp_dir().join(format!("verdant-test-{}-{tag}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        SocketPath(path)
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn udp_send_to_and_recv_from() {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b_addr = b.local_addr().unwrap();
    assert_eq!(a.send_to(b"datagram", b_addr).unwrap(), 8);
    let mut buf = [0; 64];
    let (n, from) = b.peek_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"datagram"[..], a.local_addr().unwrap()));
    let (n, from) = b.recv_from(&mut buf).unwrap(); // peek left it queued
    assert_eq!((&buf[..n], from), (&b"datagram"[..], a.local_addr().unwrap()));
}

#[test]
fn udp_recv_blocks_only_the_calling_greenlet() {
    let log = Log::new();
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = receiver.local_addr().unwrap();
    let waiting = spawn({
        let log = log.clone();
        move || {
            let mut buf = [0; 8];
            let (n, _) = receiver.recv_from(&mut buf).unwrap();
            log.push(format!("got {}", String::from_utf8_lossy(&buf[..n])));
        }
    });
    yield_now();
    log.push("main runs meanwhile");
    UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"hi", addr).unwrap();
    waiting.get().unwrap();
    assert_eq!(log.take(), ["main runs meanwhile", "got hi"]);
}

#[test]
fn udp_connect_send_and_recv() {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    b.connect(a.local_addr().unwrap()).unwrap();
    assert_eq!(a.peer_addr().unwrap(), b.local_addr().unwrap());
    a.send(b"one").unwrap();
    let mut buf = [0; 8];
    let n = b.peek(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"one");
    let n = b.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"one");
    // A connected socket ignores other senders.
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger.send_to(b"noise", b.local_addr().unwrap()).unwrap();
    a.send(b"two").unwrap();
    let n = b.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"two");
}

#[test]
fn udp_read_timeout_returns_timed_out_and_the_socket_stays_usable() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    assert_eq!(socket.read_timeout().unwrap(), Some(Duration::from_millis(20)));
    let start = Instant::now();
    let err = socket.recv_from(&mut [0; 8]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(start.elapsed() >= Duration::from_millis(20));
    socket.send_to(b"self", socket.local_addr().unwrap()).unwrap();
    let mut buf = [0; 8];
    assert_eq!(socket.recv_from(&mut buf).unwrap().0, 4);
    socket.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(socket.write_timeout().unwrap(), Some(Duration::from_secs(1)));
}

#[test]
fn udp_with_timeout_interrupts_recv() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(with_timeout(Duration::from_millis(10), || socket.recv_from(&mut [0; 8])).is_err());
}

#[test]
fn udp_options_and_clone() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_broadcast(true).unwrap();
    assert!(socket.broadcast().unwrap());
    socket.set_ttl(7).unwrap();
    assert_eq!(socket.ttl().unwrap(), 7);
    let clone = socket.try_clone().unwrap();
    assert_eq!(clone.local_addr().unwrap(), socket.local_addr().unwrap());
    clone.send_to(b"via clone", socket.local_addr().unwrap()).unwrap();
    let mut buf = [0; 16];
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"via clone");
    assert!(socket.take_error().unwrap().is_none());
}

#[test]
fn unix_listener_accepts_and_streams_echo() {
    let path = SocketPath::new("echo");
    let listener = UnixListener::bind(&path.0).unwrap();
    assert_eq!(listener.local_addr().unwrap().as_pathname(), Some(path.0.as_path()));
    let server = spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0; 5];
        stream.read_exact(&mut buf).unwrap();
        stream.write_all(&buf).unwrap();
    });
    let mut client = UnixStream::connect(&path.0).unwrap();
    assert_eq!(client.peer_addr().unwrap().as_pathname(), Some(path.0.as_path()));
    client.write_all(b"unix!").unwrap();
    let mut echo = [0; 5];
    client.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"unix!");
    server.get().unwrap();
}

#[test]
fn unix_incoming_yields_each_connection() {
    let path = SocketPath::new("incoming");
    let listener = UnixListener::bind(&path.0).unwrap();
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let path = path.0.clone();
            spawn(move || UnixStream::connect(path).unwrap().write_all(b"x").unwrap())
        })
        .collect();
    let received: Vec<u8> = listener
        .incoming()
        .take(3)
        .map(|stream| {
            let mut byte = [0];
            stream.unwrap().read_exact(&mut byte).unwrap();
            byte[0]
        })
        .collect();
    assert_eq!(received, *b"xxx");
    for client in clients {
        client.get().unwrap();
    }
}

#[test]
fn unix_connect_to_a_missing_path_fails() {
    let path = SocketPath::new("missing");
    let err = UnixStream::connect(&path.0).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}

#[test]
fn unix_pair_half_close_and_timeouts() {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    b.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    assert_eq!(b.read(&mut [0; 4]).unwrap_err().kind(), io::ErrorKind::TimedOut);
    a.write_all(b"last words").unwrap();
    a.shutdown(Shutdown::Write).unwrap();
    let mut all = String::new();
    b.read_to_string(&mut all).unwrap();
    assert_eq!(all, "last words");
    b.write_all(b"reply").unwrap(); // the other direction is still open
    let mut reply = [0; 5];
    a.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"reply");
}

#[test]
fn unix_write_timeout_when_nobody_reads() {
    let (mut a, _b) = UnixStream::pair().unwrap();
    a.set_write_timeout(Some(Duration::from_millis(20))).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let err = loop {
        if let Err(err) = a.write(&chunk) {
            break err;
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
}

#[test]
fn unix_clone_and_shared_references() {
    let (a, b) = UnixStream::pair().unwrap();
    let a = Rc::new(a);
    let reader = spawn({
        let a = a.clone();
        move || {
            let mut buf = [0; 4];
            (&*a).read_exact(&mut buf).unwrap();
            buf
        }
    });
    let b2 = b.try_clone().unwrap();
    (&b2).write_all(b"pong").unwrap();
    assert_eq!(&reader.get().unwrap(), b"pong");
    assert!(b.local_addr().unwrap().is_unnamed());
}

#[test]
fn wait_readable_and_writable_are_reexported_for_any_fd() {
    let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    wait_writable(&b, Some(Duration::from_secs(5))).unwrap();
    let err = wait_readable(&b, Some(Duration::from_millis(10))).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    let reader = spawn(move || wait_readable(&b, None));
    yield_now();
    a.write_all(b"!").unwrap();
    reader.take().unwrap().unwrap();
}
