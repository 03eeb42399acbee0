//! `std::net`, unchanged, in greenlets under `verdant::patch`: connects, reads, writes and
//! accepts park only their greenlet; socket timeouts, kills and `with_timeout` behave as
//! the docs say. Every test here fails without the hooks (see `patch_support`).

mod patch_support;

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::Duration;

use patch_support::{DelayedServer, HangGuard, InFlight, Ticker};
use verdant::{GreenletError, spawn, with_timeout, yield_now};

const CLIENTS: usize = 500;

#[test]
fn five_hundred_std_clients_wait_on_a_slow_server_together() {
    patch_support::install();
    let _guard = HangGuard::new("500 std clients", Duration::from_secs(120));
    let server = DelayedServer::start(Duration::from_millis(200));
    let addr = server.addr;
    let in_flight = InFlight::new();
    let ticker = Ticker::start(&in_flight);
    let clients = in_flight.spawn_clients(CLIENTS, CLIENTS * 9 / 10, move |i| {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(format!("request {i}\n").as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    });
    let answers: Vec<_> = clients.iter().map(|c| c.get().unwrap()).collect();
    let (ticks, ticks_in_flight) = ticker.stop();
    assert!(
        in_flight.max() >= CLIENTS * 9 / 10,
        "only {} of {CLIENTS} clients were in their blocking calls at once (server held {} \
         at most): the calls blocked the thread",
        in_flight.max(),
        server.max_open()
    );
    assert!(ticks_in_flight > 0, "the ticker never ran while clients waited ({ticks} ticks)");
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap(), format!("OK request {i}\n"));
    }
}

/// After an interrupted read: a new greenlet's read on `client` gets what `server` sends.
fn assert_still_readable(client: &Rc<TcpStream>, server: &mut TcpStream) {
    let c = client.clone();
    let next = spawn(move || {
        let mut buf = [0; 16];
        let n = (&*c).read(&mut buf).unwrap();
        buf[..n].to_vec()
    });
    server.write_all(b"still here").unwrap();
    assert_eq!(next.get().unwrap(), b"still here");
}

/// A connected pair: `(client, server side)`.
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

#[test]
fn a_read_timeout_is_honoured_and_the_hub_runs_meanwhile() {
    patch_support::install();
    let (client, _server) = pair();
    client.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let ticks = Rc::new(Cell::new(0));
    let t = ticks.clone();
    // The ticker first: its first tick is then due before the read's timeout, whatever
    // the machine's load (the hub fires due timers in deadline order).
    let ticker = spawn(move || {
        for _ in 0..5 {
            verdant::sleep(Duration::from_millis(1));
            t.set(t.get() + 1);
        }
    });
    let t = ticks.clone();
    let reader = spawn(move || {
        let mut buf = [0; 16];
        let result = (&client).read(&mut buf).map_err(|e| e.kind());
        (result, t.get())
    });
    let (result, ticks_meanwhile) = reader.get().unwrap();
    // std maps the EAGAIN of an expired SO_RCVTIMEO to WouldBlock, as without the hooks.
    assert_eq!(result, Err(ErrorKind::WouldBlock));
    assert!(ticks_meanwhile > 0, "the hub did not run while the read waited for its timeout");
    ticker.join();
}

#[test]
fn one_blocking_write_queues_everything_while_a_reader_drains() {
    patch_support::install();
    let (client, server) = pair();
    // Without the hooks the write would block the thread (the reader cannot run): the
    // kernel's own SO_SNDTIMEO then ends it with a partial count, failing the test.
    client.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    const LEN: usize = 8 << 20;
    let reader = spawn(move || {
        let mut total = 0;
        let mut buf = vec![0; 64 << 10];
        loop {
            match (&server).read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    });
    let writer = spawn(move || {
        let data = vec![7u8; LEN];
        let n = (&client).write(&data).unwrap(); // one call: a blocking send queues it all
        client.shutdown(Shutdown::Write).unwrap();
        n
    });
    assert_eq!(writer.get().unwrap(), LEN);
    assert_eq!(reader.get().unwrap(), LEN);
}

#[test]
fn accept_waits_for_a_connection_cooperatively() {
    patch_support::install();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Bounds the accept in the kernel when it is not cooperative (the test then fails).
    set_timeout(listener.as_raw_fd(), libc::SO_RCVTIMEO, Duration::from_secs(5));
    let acceptor = spawn(move || listener.accept().map(|(_, peer)| peer).map_err(|e| e.kind()));
    let connector = spawn(move || {
        let stream = TcpStream::connect(addr).unwrap();
        stream.local_addr().unwrap()
    });
    assert_eq!(acceptor.get().unwrap(), Ok(connector.get().unwrap()));
}

/// Spawns a greenlet that ticks every millisecond five times; returns the tick count.
fn ticker() -> Rc<Cell<usize>> {
    let ticks = Rc::new(Cell::new(0));
    let t = ticks.clone();
    spawn(move || {
        for _ in 0..5 {
            verdant::sleep(Duration::from_millis(1));
            t.set(t.get() + 1);
        }
    });
    ticks
}

#[test]
fn an_expired_accept_timeout_fails_with_eagain_as_in_the_kernel() {
    patch_support::install();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    set_timeout(listener.as_raw_fd(), libc::SO_RCVTIMEO, Duration::from_millis(50));
    let ticks = ticker();
    let t = ticks.clone();
    let acceptor =
        spawn(move || (listener.accept().map(|_| ()).map_err(|e| e.raw_os_error()), t.get()));
    let (result, ticks_meanwhile) = acceptor.get().unwrap();
    assert_eq!(result, Err(Some(libc::EAGAIN)));
    assert!(ticks_meanwhile > 0, "the hub did not run while accept waited");
}

#[test]
fn an_expired_connect_timeout_fails_with_einprogress_as_in_the_kernel() {
    patch_support::install();
    // A listener with a backlog of 0 and one connection queued: the kernel drops further
    // SYNs, so the next connect waits until its SO_SNDTIMEO passes. The kernel's blocking
    // connect then fails with EINPROGRESS (the connection goes on in the background).
    let listener = socket_fd();
    // SAFETY: plain socket calls on fds this test owns, with valid addresses.
    let addr = unsafe {
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(libc::bind(listener, (&raw const addr).cast(), len), 0);
        assert_eq!(libc::getsockname(listener, (&raw mut addr).cast(), &mut len), 0);
        assert_eq!(libc::listen(listener, 0), 0);
        addr
    };
    let connect = move || {
        let fd = socket_fd();
        set_timeout(fd, libc::SO_SNDTIMEO, Duration::from_millis(50));
        let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: a valid address of that length.
        let r = unsafe { libc::connect(fd, (&raw const addr).cast(), len) };
        let error = std::io::Error::last_os_error().raw_os_error();
        (r, if r == 0 { None } else { error })
    };
    assert_eq!(connect(), (0, None), "the first connect fills the backlog");
    let ticks = ticker();
    let t = ticks.clone();
    let connector = spawn(move || (connect(), t.get()));
    let (result, ticks_meanwhile) = connector.get().unwrap();
    assert_eq!(result, (-1, Some(libc::EINPROGRESS)));
    assert!(ticks_meanwhile > 0, "the hub did not run while connect waited");
}

/// A blocking TCP socket (leaked: the test process ends soon).
fn socket_fd() -> i32 {
    // SAFETY: plain call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0);
    fd
}

fn set_timeout(fd: i32, option: i32, timeout: Duration) {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid timeval for a socket option of that type.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
}

#[test]
fn a_kill_at_a_std_read_ends_the_greenlet_killed_and_leaves_the_socket_usable() {
    patch_support::install();
    let (client, mut server) = pair();
    // Bounds the read when it is not cooperative (the kill then cannot land in it).
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let client = Rc::new(client);
    let seen = Rc::new(Cell::new(None));
    let (c, s) = (client.clone(), seen.clone());
    let reader = spawn(move || {
        let mut buf = [0; 16];
        let result = (&*c).read(&mut buf);
        s.set(Some(result.map_err(|e| e.raw_os_error())));
    });
    yield_now(); // the reader starts and parks in its read
    reader.kill();
    assert_eq!(reader.get(), Err(GreenletError::Killed));
    // The hook failed the read with ECANCELED; the kill landed when the body returned.
    assert_eq!(seen.get(), Some(Err(Some(libc::ECANCELED))));
    assert_still_readable(&client, &mut server);
}

#[test]
fn with_timeout_around_a_std_read_times_out_and_leaves_the_socket_usable() {
    patch_support::install();
    let (client, mut server) = pair();
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let client = Rc::new(client);
    let c = client.clone();
    let reader = spawn(move || {
        with_timeout(Duration::from_millis(20), || {
            let mut buf = [0; 16];
            (&*c).read(&mut buf).map_err(|e| e.raw_os_error())
        })
    });
    assert!(reader.get().unwrap().is_err(), "with_timeout did not time out");
    assert_still_readable(&client, &mut server);
}

#[test]
fn closing_a_socket_fails_a_greenlet_waiting_on_it_with_ebadf() {
    patch_support::install();
    let (client, _server) = pair();
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let fd = client.into_raw_fd();
    let reader = spawn(move || {
        let mut buf = [0u8; 16];
        // SAFETY: a valid buffer; the fd is open when the call starts.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        (n, std::io::Error::last_os_error().raw_os_error())
    });
    let closer = spawn(move || {
        // SAFETY: closes the fd the reader waits on; nothing else uses it afterwards.
        unsafe { libc::close(fd) }
    });
    assert_eq!(closer.get().unwrap(), 0);
    assert_eq!(reader.get().unwrap(), (-1, Some(libc::EBADF)));
}

#[test]
fn errno_is_kept_across_a_call_that_parked_and_succeeded() {
    patch_support::install();
    let (client, mut server) = pair();
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let reader = spawn(move || {
        // SAFETY: errno is this thread's.
        unsafe { *libc::__errno_location() = 4242 };
        let mut buf = [0u8; 16];
        // SAFETY: a valid buffer and socket.
        let n = unsafe { libc::recv(client.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        // SAFETY: as above.
        (n, unsafe { *libc::__errno_location() })
    });
    yield_now(); // the reader parks: its first attempt saw EAGAIN
    server.write_all(b"hi").unwrap();
    assert_eq!(reader.get().unwrap(), (2, 4242));
}

#[test]
fn one_blocking_writev_queues_every_buffer_while_a_reader_drains() {
    patch_support::install();
    let (client, server) = pair();
    // As for `write` above: without the hooks the writev blocks the thread until the
    // kernel's SO_SNDTIMEO ends it, and the test fails. With them, the rest after each
    // partial send goes on from the right byte of the right buffer.
    client.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    const HALF: usize = 4 << 20;
    let reader = spawn(move || {
        let (mut received, mut buf) = (Vec::new(), vec![0; 64 << 10]);
        loop {
            match (&server).read(&mut buf) {
                Ok(0) | Err(_) => return received,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    });
    let writer = spawn(move || {
        let (first, second) = (vec![1u8; HALF], vec![2u8; HALF]);
        let iov = [
            libc::iovec { iov_base: first.as_ptr() as *mut _, iov_len: HALF },
            libc::iovec { iov_base: second.as_ptr() as *mut _, iov_len: HALF },
        ];
        // SAFETY: two valid buffers; one call, which must queue both (in order).
        let n = unsafe { libc::writev(client.as_raw_fd(), iov.as_ptr(), 2) };
        client.shutdown(Shutdown::Write).unwrap();
        n
    });
    assert_eq!(writer.get().unwrap(), (2 * HALF) as isize);
    let received = reader.get().unwrap();
    assert_eq!(received.len(), 2 * HALF);
    assert!(received[..HALF].iter().all(|&b| b == 1) && received[HALF..].iter().all(|&b| b == 2));
}

/// Bytes queued in `fd`'s receive buffer, not yet read.
fn unread(fd: i32) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    assert_eq!(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) }, 0);
    n
}

#[test]
fn a_waitall_receive_waits_for_every_byte_cooperatively() {
    patch_support::install();
    let (client, mut server) = pair();
    // Bounds the receive when it is not cooperative (the test then fails, not hangs).
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let fd = client.as_raw_fd(); // `client` stays open until the test ends
    let returned = Rc::new(Cell::new(false));
    let r = returned.clone();
    let reader = spawn(move || {
        let mut buf = [0u8; 30];
        // SAFETY: a valid buffer.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_WAITALL) };
        r.set(true);
        (n, buf.to_vec())
    });
    // One chunk at a time: each is written once the reader has taken the one before (the
    // socket's queue is empty again), so its one call must have taken all three.
    let writer = spawn(move || {
        let mut taken_while_inside = 0;
        for chunk in [b"0123456789", b"abcdefghij", b"ABCDEFGHIJ"] {
            server.write_all(chunk).unwrap();
            while !returned.get() && unread(fd) > 0 {
                verdant::sleep(Duration::from_millis(1));
            }
            taken_while_inside += usize::from(!returned.get());
        }
        taken_while_inside
    });
    // The first two chunks were taken by the call still waiting for the rest.
    assert_eq!(writer.get().unwrap(), 2);
    assert_eq!(reader.get().unwrap(), (30, b"0123456789abcdefghijABCDEFGHIJ".to_vec()));
    drop(client);
}

#[test]
fn an_expired_send_timeout_returns_the_partial_count_as_in_the_kernel() {
    patch_support::install();
    let (client, _server) = pair(); // the server side never reads
    client.set_write_timeout(Some(Duration::from_millis(50))).unwrap();
    let ticks = ticker();
    let t = ticks.clone();
    let writer = spawn(move || {
        let data = vec![7u8; 64 << 20]; // far more than the socket buffers hold
        ((&client).write(&data).map_err(|e| e.raw_os_error()), t.get())
    });
    let (result, ticks_meanwhile) = writer.get().unwrap();
    // The kernel's blocking send, stopped by SO_SNDTIMEO after some progress, returns what
    // it queued; so does the hook.
    let written = result.expect("some bytes were queued before the timeout");
    assert!(0 < written && written < 64 << 20, "{written} bytes");
    assert!(ticks_meanwhile > 0, "the hub did not run while the send waited");
}

#[test]
fn a_udp_receive_waits_for_a_datagram_cooperatively() {
    patch_support::install();
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // Bounds the receive when it is not cooperative (the sender then never runs in time).
    receiver.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let addr = receiver.local_addr().unwrap();
    let reader = spawn(move || {
        let mut buf = [0u8; 64];
        let (n, from) = receiver.recv_from(&mut buf).map_err(|e| e.kind())?;
        Ok::<_, ErrorKind>((buf[..n].to_vec(), from))
    });
    let sender = spawn(move || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.send_to(b"one datagram", addr).unwrap();
        socket.local_addr().unwrap()
    });
    let from = sender.get().unwrap();
    assert_eq!(reader.get().unwrap(), Ok((b"one datagram".to_vec(), from)));
}
