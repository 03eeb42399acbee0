//! C code compiled for the tests (`patch/ctest`, with the cc crate, optimised and with
//! `_FORTIFY_SOURCE`) making blocking `connect`/`send`/`recv` calls: cooperative in
//! greenlets under `verdant::patch`, and a kill or `with_timeout` that reaches a greenlet
//! inside the C `recv` neither aborts nor unwinds through C. Each test fails without the
//! hooks (see `patch_support`).

mod patch_support;

use std::cell::Cell;
use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use patch_support::{DelayedServer, HangGuard, InFlight, Ticker};
use verdant::{GreenletError, spawn, with_timeout, yield_now};
use verdant_patch_ctest as c;

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(addr) => addr,
        SocketAddr::V6(_) => unreachable!("the test servers bind 127.0.0.1"),
    }
}

const CLIENTS: usize = 200;

#[test]
fn c_clients_wait_on_a_slow_server_together() {
    patch_support::install();
    let _guard = HangGuard::new("200 C clients", Duration::from_secs(120));
    let server = DelayedServer::start(Duration::from_millis(200));
    let addr = v4(server.addr);
    let in_flight = InFlight::new();
    let ticker = Ticker::start(&in_flight);
    let clients = in_flight
        .spawn_clients(CLIENTS, CLIENTS * 9 / 10, move |i| c::fetch(addr, &format!("c {i}\n"), 64));
    let answers: Vec<_> = clients.iter().map(|g| g.get().unwrap()).collect();
    let (ticks, ticks_in_flight) = ticker.stop();
    assert!(
        in_flight.max() >= CLIENTS * 9 / 10,
        "only {} of {CLIENTS} C clients were in their calls at once: the calls blocked",
        in_flight.max()
    );
    assert!(ticks_in_flight > 0, "the ticker never ran while C clients waited ({ticks} ticks)");
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap().unwrap(), format!("OK c {i}\n").into_bytes());
    }
}

/// A C-connected socket to a listener of ours: `(fd, the server side)`. The fd gets a
/// receive timeout, which bounds a C `recv` that is not cooperative (the test then fails
/// instead of hanging).
fn c_pair() -> (OwnedFd, std::net::TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = c::connect(v4(listener.local_addr().unwrap()));
    assert!(fd >= 0, "C connect failed: errno {}", -fd);
    // SAFETY: a fresh fd from the C connect, owned from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval { tv_sec: 5, tv_usec: 0 };
    // SAFETY: a valid timeval for SO_RCVTIMEO.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
    let (server, _) = listener.accept().unwrap();
    (fd, server)
}

fn raw(fd: &OwnedFd) -> i32 {
    std::os::fd::AsRawFd::as_raw_fd(fd)
}

#[test]
fn a_fortified_c_recv_is_cooperative() {
    // `ctest_recv_checked` reads into a local array with a length the compiler cannot
    // see: glibc's headers turn that `recv` into `__recv_chk`.
    patch_support::install();
    let (fd, mut server) = c_pair();
    let fd = raw(&fd);
    let reader = spawn(move || {
        let mut buf = [0u8; 64];
        let n = c::recv_checked(fd, &mut buf);
        (n, buf[..n.max(0) as usize].to_vec())
    });
    let writer = spawn(move || server.write_all(b"from a greenlet").unwrap());
    writer.get().unwrap();
    assert_eq!(reader.get().unwrap(), (15, b"from a greenlet".to_vec()));
}

#[test]
fn a_kill_inside_a_c_recv_ends_the_greenlet_killed_and_the_socket_stays_usable() {
    patch_support::install();
    let (fd, mut server) = c_pair();
    let fd = raw(&fd);
    let returned = Rc::new(Cell::new(None));
    let r = returned.clone();
    let victim = spawn(move || {
        let mut buf = [0u8; 16];
        let n = c::recv(fd, &mut buf); // parks inside C; the kill arrives here
        r.set(Some(n));
        // Back in Rust, no blocking call: the kill lands when this body returns.
    });
    yield_now(); // the victim starts and parks in the C recv
    victim.kill();
    assert_eq!(victim.get(), Err(GreenletError::Killed));
    assert_eq!(returned.get(), Some(-(libc::ECANCELED as i64)), "the C code saw ECANCELED");
    let next = spawn(move || {
        let mut buf = [0u8; 16];
        let n = c::recv(fd, &mut buf);
        buf[..n.max(0) as usize].to_vec()
    });
    server.write_all(b"after the kill").unwrap();
    assert_eq!(next.get().unwrap(), b"after the kill");
}

#[test]
fn with_timeout_around_a_c_recv_times_out_and_the_socket_stays_usable() {
    patch_support::install();
    let (fd, mut server) = c_pair();
    let fd = raw(&fd);
    let returned = Rc::new(Cell::new(None));
    let r = returned.clone();
    let waiter = spawn(move || {
        with_timeout(Duration::from_millis(20), || {
            let mut buf = [0u8; 16];
            r.set(Some(c::recv(fd, &mut buf)));
        })
    });
    assert!(waiter.get().unwrap().is_err(), "with_timeout did not time out");
    assert_eq!(returned.get(), Some(-(libc::ECANCELED as i64)));
    let next = spawn(move || {
        let mut buf = [0u8; 32];
        let n = c::recv(fd, &mut buf);
        buf[..n.max(0) as usize].to_vec()
    });
    server.write_all(b"after the timeout").unwrap();
    assert_eq!(next.get().unwrap(), b"after the timeout");
}
