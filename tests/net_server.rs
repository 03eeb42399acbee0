//! `StreamServer`: serving, pool limits, graceful and forced stop, error reporting,
//! misbehaving peers, and backing off when out of fds.

use verdant_testutil as util;

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::time::{Duration, Instant};

use verdant::net::TcpStream;
use verdant::pool::Pool;
use verdant::server::{ServerError, ServerHandle, StreamServer};
use verdant::sync::Event;
use verdant::{GreenletError, sleep, spawn, yield_now};

use util::{DropCounter, Log, assert_test_passes_in_child, is_child_for};

/// Reads one line-less message of up to 64 bytes and writes it back, until EOF.
fn echo(mut stream: TcpStream, _peer: std::net::SocketAddr) -> io::Result<()> {
    let mut buf = [0; 64];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

/// Sends `message` and reads the same number of bytes back.
fn round_trip(stream: &mut TcpStream, message: &[u8]) -> io::Result<Vec<u8>> {
    stream.write_all(message)?;
    let mut reply = vec![0; message.len()];
    stream.read_exact(&mut reply)?;
    Ok(reply)
}

/// Collects the errors a server reports.
fn collecting(errors: &Rc<RefCell<Vec<String>>>) -> impl Fn(ServerError) + 'static {
    let errors = errors.clone();
    move |error| errors.borrow_mut().push(error.to_string())
}

#[test]
fn serves_many_clients_at_once() {
    let server = StreamServer::new("127.0.0.1:0", echo).unwrap();
    server.start().unwrap();
    assert!(server.is_started());
    let addr = server.local_addr();
    let clients: Vec<_> = (0..50u32)
        .map(|i| {
            spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                let message = format!("client {i}");
                round_trip(&mut stream, message.as_bytes()).unwrap() == message.as_bytes()
            })
        })
        .collect();
    assert!(clients.iter().all(|c| c.get().unwrap()));
    server.stop(None);
    assert_eq!(server.stats().accepted, 50);
    assert_eq!(server.stats().handler_errors, 0);
}

#[test]
fn a_bounded_pool_caps_concurrent_handlers_and_serves_everyone() {
    // The handlers hold their place until the gate opens; the test opens it only after all
    // six clients are connected (waiting in the backlog) and two handlers run, so a third
    // handler would have started by then if the pool let it.
    let running = Rc::new(Cell::new(0usize));
    let most = Rc::new(Cell::new(0usize));
    let two_running = Event::new();
    let gate = Event::new();
    let handler = {
        let (running, most) = (running.clone(), most.clone());
        let (two_running, gate) = (two_running.clone(), gate.clone());
        move |mut stream: TcpStream, _| -> io::Result<()> {
            running.set(running.get() + 1);
            most.set(most.get().max(running.get()));
            if running.get() == 2 {
                two_running.set();
            }
            gate.wait();
            stream.write_all(b"done")?;
            running.set(running.get() - 1);
            Ok(())
        }
    };
    let server = StreamServer::new("127.0.0.1:0", handler).unwrap().with_pool(Pool::new(2));
    server.start().unwrap();
    let addr = server.local_addr();
    let connected = Rc::new(Cell::new(0usize));
    let all_connected = Event::new();
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (connected, all_connected) = (connected.clone(), all_connected.clone());
            spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                connected.set(connected.get() + 1);
                if connected.get() == 6 {
                    all_connected.set();
                }
                let mut reply = String::new();
                stream.read_to_string(&mut reply).unwrap();
                reply
            })
        })
        .collect();
    assert!(all_connected.wait_timeout(Duration::from_secs(30)));
    assert!(two_running.wait_timeout(Duration::from_secs(30)));
    for _ in 0..10 {
        yield_now(); // room for the accept loop to (wrongly) start a third
    }
    assert_eq!((running.get(), server.stats().accepted), (2, 2), "the pool of 2 caps them");
    gate.set();
    for client in &clients {
        assert_eq!(client.get().unwrap(), "done");
    }
    assert_eq!(most.get(), 2, "the pool of 2 must cap the handlers at 2");
    assert_eq!(server.stats().accepted, 6);
    server.stop(None);
}

#[test]
fn stop_lets_running_handlers_finish_within_the_timeout() {
    let log = Log::new();
    let handler = {
        let log = log.clone();
        move |mut stream: TcpStream, _| -> io::Result<()> {
            log.push("handler started");
            sleep(Duration::from_millis(30));
            stream.write_all(b"finished")?;
            log.push("handler finished");
            Ok(())
        }
    };
    let server = StreamServer::new("127.0.0.1:0", handler).unwrap();
    server.start().unwrap();
    let addr = server.local_addr();
    let mut client = TcpStream::connect(addr).unwrap();
    while server.stats().active == 0 {
        yield_now();
    }
    server.stop(Some(Duration::from_secs(10)));
    log.push("stop returned");
    assert_eq!(log.take(), ["handler started", "handler finished", "stop returned"]);
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "finished");
    assert!(server.is_closed());
    assert!(!server.is_started());
    let err = TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
}

#[test]
fn stop_kills_handlers_that_outlive_the_timeout() {
    let drops = DropCounter::new();
    let handler = {
        let drops = drops.clone();
        move |mut stream: TcpStream, _| -> io::Result<()> {
            let _token = drops.token();
            stream.read_to_end(&mut Vec::new())?; // the client never closes
            Ok(())
        }
    };
    let server = StreamServer::new("127.0.0.1:0", handler).unwrap();
    server.start().unwrap();
    let _client = TcpStream::connect(server.local_addr()).unwrap();
    while server.stats().active == 0 {
        yield_now();
    }
    let start = Instant::now();
    server.stop(Some(Duration::from_millis(30)));
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(drops.dropped(), 1, "the handler was killed and unwound");
    assert_eq!(server.stats().active, 0);
    assert_eq!(server.stats().handler_errors, 0, "a kill at stop is not an error");
}

#[test]
fn serve_forever_returns_when_another_greenlet_stops_the_server() {
    let server = StreamServer::new("127.0.0.1:0", echo).unwrap();
    let serving = spawn({
        let server = server.clone();
        move || server.serve_forever()
    });
    yield_now();
    assert!(server.is_started());
    let mut client = TcpStream::connect(server.local_addr()).unwrap();
    assert_eq!(round_trip(&mut client, b"hello").unwrap(), b"hello");
    drop(client);
    server.stop(None);
    serving.take().unwrap().unwrap();
}

#[test]
fn killing_serve_forever_stops_the_server() {
    let server = StreamServer::new("127.0.0.1:0", echo).unwrap();
    let serving = spawn({
        let server = server.clone();
        move || server.serve_forever()
    });
    yield_now();
    serving.kill();
    assert_eq!(serving.take().unwrap_err(), GreenletError::Killed);
    // The stop runs in a greenlet of its own, as in gevent.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.is_closed() && Instant::now() < deadline {
        sleep(Duration::from_millis(1));
    }
    assert!(server.is_closed());
}

#[test]
fn a_handler_can_stop_its_own_server() {
    let server_slot: Rc<RefCell<Option<StreamServer>>> = Rc::default();
    let handler = {
        let server_slot = server_slot.clone();
        move |mut stream: TcpStream, _| -> io::Result<()> {
            stream.write_all(b"bye")?;
            server_slot.borrow().as_ref().unwrap().stop(None);
            Ok(())
        }
    };
    let server = StreamServer::new("127.0.0.1:0", handler).unwrap();
    *server_slot.borrow_mut() = Some(server.clone());
    let serving = spawn({
        let server = server.clone();
        move || server.serve_forever()
    });
    let mut reply = String::new();
    TcpStream::connect(server.local_addr()).unwrap().read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "bye");
    serving.take().unwrap().unwrap();
    assert!(server.is_closed());
    server_slot.borrow_mut().take(); // break the cycle
}

#[test]
fn handler_errors_and_panics_are_reported_and_serving_goes_on() {
    let errors = Rc::new(RefCell::new(Vec::new()));
    let handler = |mut stream: TcpStream, _| -> io::Result<()> {
        let mut command = [0; 5];
        stream.read_exact(&mut command)?;
        match &command {
            b"error" => Err(io::Error::other("asked to fail")),
            b"panic" => panic!("asked to panic"),
            _ => stream.write_all(b"fine!"),
        }
    };
    let server = StreamServer::new("127.0.0.1:0", handler).unwrap().on_error(collecting(&errors));
    server.start().unwrap();
    let addr = server.local_addr();
    for command in [b"error", b"panic"] {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(command).unwrap();
        assert_eq!(stream.read(&mut [0; 8]).unwrap(), 0, "the connection is closed");
    }
    let mut stream = TcpStream::connect(addr).unwrap();
    assert_eq!(round_trip(&mut stream, b"hello").unwrap(), b"fine!");
    drop(stream);
    server.stop(None);
    let errors = errors.borrow();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("failed: asked to fail"), "{errors:?}");
    assert!(errors[1].contains("panicked: asked to panic"), "{errors:?}");
    assert_eq!(server.stats().handler_errors, 2);
}

#[test]
fn peers_that_reset_half_close_or_stall_do_not_disturb_the_others() {
    let errors = Rc::new(RefCell::new(Vec::new()));
    let handler = |mut stream: TcpStream, _| -> io::Result<()> {
        // Only the staller (it starts with "stal") gets a short read timeout: timeouts that
        // must not fire (the good client's, the resetter's before its reset arrives)
        // cannot, however slow the machine is.
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut message = [0; 8];
        stream.read_exact(&mut message[..4])?;
        if &message[..4] == b"stal" {
            stream.set_read_timeout(Some(Duration::from_millis(50)))?;
        }
        stream.read_exact(&mut message[4..])?;
        stream.write_all(&message)
    };
    let server = StreamServer::new("127.0.0.1:0", handler).unwrap().on_error(collecting(&errors));
    server.start().unwrap();
    let addr = server.local_addr();

    // Reset: sends half a message, then closes with RST.
    let resetter = TcpStream::connect(addr).unwrap();
    (&resetter).write_all(b"half").unwrap();
    util::set_linger_zero(&resetter);
    // Half-close: sends half a message and shuts down writing.
    let half_closer = TcpStream::connect(addr).unwrap();
    (&half_closer).write_all(b"half").unwrap();
    half_closer.shutdown(Shutdown::Write).unwrap();
    // Stall: sends half a message and then nothing.
    let staller = TcpStream::connect(addr).unwrap();
    (&staller).write_all(b"stal").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30); // a hang guard
    while server.stats().accepted < 3 && Instant::now() < deadline {
        sleep(Duration::from_millis(1)); // until the three handlers run
    }
    drop(resetter);

    let mut good = TcpStream::connect(addr).unwrap();
    assert_eq!(round_trip(&mut good, b"whole!!!").unwrap(), b"whole!!!");

    let deadline = Instant::now() + Duration::from_secs(30);
    while server.stats().handler_errors < 3 && Instant::now() < deadline {
        sleep(Duration::from_millis(5));
    }
    let mut errors = errors.borrow().clone();
    errors.sort();
    assert_eq!(errors.len(), 3, "{errors:?}");
    let kinds = ["connection reset", "failed to fill whole buffer", "timed out"];
    for kind in kinds {
        assert!(errors.iter().any(|e| e.to_lowercase().contains(kind)), "{kind}: {errors:?}");
    }
    drop((half_closer, staller));
    server.stop(None);
}

#[test]
fn start_twice_or_after_close_is_an_error() {
    let server = StreamServer::new("127.0.0.1:0", echo).unwrap();
    server.start().unwrap();
    assert_eq!(server.start().unwrap_err().kind(), io::ErrorKind::AlreadyExists);
    server.close();
    assert!(server.is_closed());
    assert_eq!(server.start().unwrap_err().kind(), io::ErrorKind::NotConnected);
    let text = format!("{server:?}");
    assert!(text.contains("closed: true"), "{text}");
}

/// Runs in a child process: lowers the fd limit so that `accept` fails with EMFILE while
/// handlers hold their connections, then frees fds and checks the server goes on.
#[test]
fn accept_backs_off_when_out_of_fds_and_then_serves_again() {
    if !is_child_for("accept_backs_off_when_out_of_fds_and_then_serves_again") {
        assert_test_passes_in_child("accept_backs_off_when_out_of_fds_and_then_serves_again");
        return;
    }
    const CLIENTS: usize = 6;
    const FREE_FDS: usize = 2; // the server can accept only two connections
    let release = Event::new();
    let out_of_fds = Event::new();
    let handler = {
        let release = release.clone();
        move |mut stream: TcpStream, _| -> io::Result<()> {
            release.wait(); // hold the fd until the test has seen EMFILE
            stream.write_all(b"ok")
        }
    };
    let accept_errors = Rc::new(RefCell::new(Vec::new()));
    let on_error = {
        let (accept_errors, out_of_fds) = (accept_errors.clone(), out_of_fds.clone());
        move |error: ServerError| {
            if let ServerError::Accept { error, backoff } = error {
                accept_errors.borrow_mut().push((error.raw_os_error(), backoff));
                out_of_fds.set();
            }
        }
    };
    let server = StreamServer::new("127.0.0.1:0", handler)
        .unwrap()
        .on_error(on_error)
        .with_accept_backoff(Duration::from_millis(1), Duration::from_millis(8));
    let addr = server.local_addr();
    // Connect every client first (the kernel completes the handshakes into the backlog).
    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // Lower the limit so that exactly FREE_FDS fd numbers below it are free.
    let is_open = |fd: i32| {
        // SAFETY: F_GETFD only queries the descriptor table.
        unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
    };
    let nth_free = (0..).filter(|&fd| !is_open(fd)).nth(FREE_FDS - 1).unwrap();
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid struct; this child process is ours alone.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = (nth_free + 1) as libc::rlim_t;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }

    server.start().unwrap();
    assert!(out_of_fds.wait_timeout(Duration::from_secs(10)), "accept must hit EMFILE");
    sleep(Duration::from_millis(20)); // a few more back-offs
    assert_eq!(server.stats().accepted, FREE_FDS as u64);
    {
        let errors = accept_errors.borrow();
        assert!(errors.iter().all(|(errno, _)| *errno == Some(libc::EMFILE)), "{errors:?}");
        let backoffs: Vec<Duration> = errors.iter().map(|(_, b)| *b).collect();
        assert_eq!(backoffs[0], Duration::from_millis(1), "{backoffs:?}");
        assert!(backoffs.windows(2).all(|w| w[1] == (w[0] * 2).min(Duration::from_millis(8))));
    }
    release.set(); // handlers answer and close their fds: accepting resumes
    let replies: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            spawn(move || {
                let mut reply = String::new();
                client.read_to_string(&mut reply).map(|_| reply)
            })
        })
        .collect();
    for reply in replies {
        assert_eq!(reply.take().unwrap().unwrap(), "ok");
    }
    assert_eq!(server.stats().accepted, CLIENTS as u64);
    assert!(server.stats().accept_errors >= 1);
    server.stop(None);
}

/// Reads until the peer closes (EOF or a reset), giving up after a generous hang guard.
fn closed_by_peer(stream: &TcpStream) -> bool {
    stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let mut buf = [0; 64 * 1024];
    loop {
        match (&*stream).read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false, // the hang guard ran out
        }
    }
}

/// How long a test waits for something that must happen before calling it a hang.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// The timeouts under test: short, since only the fact of closing is asserted.
const SHORT: Duration = Duration::from_millis(200);

#[test]
fn an_idle_timeout_closes_a_stalled_connection_without_an_error_report() {
    let errors = Rc::new(RefCell::new(Vec::new()));
    let server = StreamServer::new("127.0.0.1:0", echo)
        .unwrap()
        .on_error(collecting(&errors))
        .with_idle_timeout(SHORT);
    server.start().unwrap();
    let mut client = TcpStream::connect(server.local_addr()).unwrap();
    assert_eq!(round_trip(&mut client, b"hello").unwrap(), b"hello", "served while active");
    // Now the client sends nothing: the handler's read times out and it closes.
    assert!(closed_by_peer(&client), "the server must close an idle connection");
    server.stop(None);
    assert_eq!(server.stats().timed_out, 1);
    assert_eq!(server.stats().handler_errors, 0, "a timeout of the server's own is no error");
    assert!(errors.borrow().is_empty(), "{:?}", errors.borrow());
}

#[test]
fn an_idle_timeout_also_ends_writes_to_a_client_that_does_not_read() {
    let handler = |stream: TcpStream, _| -> io::Result<()> {
        let chunk = [b'x'; 64 * 1024];
        loop {
            (&stream).write_all(&chunk)?; // the client never reads: soon this waits
        }
    };
    let server = StreamServer::new("127.0.0.1:0", handler).unwrap().with_idle_timeout(SHORT);
    server.start().unwrap();
    let client = TcpStream::connect(server.local_addr()).unwrap();
    let deadline = Instant::now() + HANG_GUARD;
    while server.stats().timed_out == 0 && Instant::now() < deadline {
        sleep(Duration::from_millis(5)); // until the handler's write has timed out
    }
    assert_eq!(server.stats().timed_out, 1, "the handler's write must time out");
    assert!(closed_by_peer(&client), "after the buffered data, the connection ends");
    server.stop(None);
    assert_eq!(server.stats().handler_errors, 0);
}

#[test]
fn a_first_byte_timeout_closes_silent_connections_before_the_handler_runs() {
    let read_timeouts = Rc::new(RefCell::new(Vec::new()));
    let handler = {
        let read_timeouts = read_timeouts.clone();
        move |stream: TcpStream, peer| {
            read_timeouts.borrow_mut().push(stream.read_timeout().unwrap());
            echo(stream, peer)
        }
    };
    let idle = Duration::from_secs(3600);
    let server = StreamServer::new("127.0.0.1:0", handler)
        .unwrap()
        .with_first_byte_timeout(SHORT)
        .with_idle_timeout(idle);
    server.start().unwrap();
    let silent = TcpStream::connect(server.local_addr()).unwrap();
    let mut prompt = TcpStream::connect(server.local_addr()).unwrap();
    assert_eq!(round_trip(&mut prompt, b"hi").unwrap(), b"hi");
    assert!(closed_by_peer(&silent), "a connection that sends nothing is closed");
    drop(prompt);
    server.stop(None);
    assert_eq!(server.stats().timed_out, 1);
    assert_eq!(server.stats().accepted, 2);
    // Only the prompt client's handler ran, with the idle timeout in place.
    assert_eq!(*read_timeouts.borrow(), [Some(idle)]);
}

#[test]
fn slowloris_connections_that_fill_the_pool_are_timed_out_and_others_get_served() {
    const SLOWLORIS: usize = 100;
    let handler = |mut stream: TcpStream, _| -> io::Result<()> {
        let mut message = [0; 8];
        stream.read_exact(&mut message)?;
        stream.write_all(&message)
    };
    let server = StreamServer::new("127.0.0.1:0", handler)
        .unwrap()
        .with_pool(Pool::new(SLOWLORIS / 2))
        .with_idle_timeout(SHORT);
    server.start().unwrap();
    let addr = server.local_addr();
    // Each sends half a message and then nothing; together they fill the pool twice over.
    let slowloris: Vec<TcpStream> = (0..SLOWLORIS)
        .map(|_| {
            let stream = TcpStream::connect(addr).unwrap();
            (&stream).write_all(b"half").unwrap();
            stream
        })
        .collect();
    let closed: Vec<_> = slowloris.into_iter().map(|s| spawn(move || closed_by_peer(&s))).collect();
    let mut normal = TcpStream::connect(addr).unwrap();
    normal.set_read_timeout(Some(HANG_GUARD)).unwrap();
    assert_eq!(round_trip(&mut normal, b"whole!!!").unwrap(), b"whole!!!");
    assert!(closed.iter().all(|c| c.get().unwrap()), "every slowloris connection is closed");
    server.stop(None);
    assert_eq!(server.stats().timed_out, SLOWLORIS as u64);
    assert_eq!(server.stats().handler_errors, 0);
}

/// Runs in a child process whose stderr is a pipe the test never reads, as with a
/// stalled log shipper: the default error report must not stop the server when the
/// pipe is full (64 KiB, some 700 reports).
#[test]
fn a_stalled_stderr_does_not_stop_the_server() {
    const NAME: &str = "a_stalled_stderr_does_not_stop_the_server";
    if !is_child_for(NAME) {
        let (status, stdout) = run_with_unread_stderr(NAME, HANG_GUARD * 4);
        assert!(
            status.is_some_and(|s| s.success()),
            "the child {}: {stdout}",
            if status.is_none() { "hung (killed by the hang guard)" } else { "failed" }
        );
        return;
    }
    const ERRORS: usize = 3000;
    let handler = |mut stream: TcpStream, _| -> io::Result<()> {
        let mut command = [0; 1];
        stream.read_exact(&mut command)?;
        match &command {
            b"e" => Err(io::Error::other("asked to fail")),
            _ => stream.write_all(b"served"),
        }
    };
    let server = StreamServer::new("127.0.0.1:0", handler).unwrap(); // reports to stderr
    server.start().unwrap();
    for _ in 0..ERRORS {
        let mut stream = TcpStream::connect(server.local_addr()).unwrap();
        stream.write_all(b"e").unwrap();
        assert_eq!(stream.read(&mut [0; 8]).unwrap(), 0, "closed after the error");
    }
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.write_all(b"n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "served");
    server.stop(None);
    assert_eq!(server.stats().handler_errors, ERRORS as u64);
    println!("served after {ERRORS} error reports");
}

/// Runs test `name` of this binary in a child whose stderr is a pipe nobody reads while
/// it runs; kills it after `guard`. Returns its exit status (`None`: it hung) and stdout.
fn run_with_unread_stderr(
    name: &str,
    guard: Duration,
) -> (Option<std::process::ExitStatus>, String) {
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(util::CHILD_MARKER, name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + guard;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20)); // not a hub: a plain poll
    };
    let mut stdout = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut stdout);
    (status, stdout)
}

#[test]
fn max_accept_bounds_the_connections_accepted_per_turn() {
    // Five connections wait in the backlog before the server starts: each handler records
    // how many connections had been accepted when it ran. The accept loop yields after
    // every `max_accept` accepts, and the handlers spawned so far run then.
    fn accepted_seen_by_handlers(max_accept: Option<usize>) -> Vec<u64> {
        let seen: Rc<RefCell<Vec<u64>>> = Rc::default();
        let server_slot: Rc<RefCell<Option<StreamServer>>> = Rc::default();
        let handler = {
            let (seen, server_slot) = (seen.clone(), server_slot.clone());
            move |_stream: TcpStream, _| {
                let accepted = server_slot.borrow().as_ref().unwrap().stats().accepted;
                seen.borrow_mut().push(accepted);
            }
        };
        let mut server = StreamServer::new("127.0.0.1:0", handler).unwrap();
        if let Some(max_accept) = max_accept {
            server = server.with_max_accept(max_accept);
        }
        *server_slot.borrow_mut() = Some(server.clone());
        let clients: Vec<_> =
            (0..5).map(|_| TcpStream::connect(server.local_addr()).unwrap()).collect();
        server.start().unwrap();
        while seen.borrow().len() < clients.len() {
            yield_now();
        }
        server.stop(None);
        server_slot.borrow_mut().take(); // break the cycle
        seen.take()
    }
    assert_eq!(accepted_seen_by_handlers(Some(2)), [2, 2, 4, 4, 5]);
    assert_eq!(accepted_seen_by_handlers(Some(1)), [1, 2, 3, 4, 5]);
    assert_eq!(accepted_seen_by_handlers(None), [5, 5, 5, 5, 5]);
}

#[test]
#[should_panic(expected = "max_accept")]
fn a_zero_max_accept_is_refused() {
    let _ = StreamServer::new("127.0.0.1:0", |_: TcpStream, _| {}).unwrap().with_max_accept(0);
}

#[test]
fn a_handler_stops_its_server_through_its_handle() {
    let server = StreamServer::with_handle(
        "127.0.0.1:0",
        |mut stream: TcpStream, _, server: &ServerHandle| -> io::Result<()> {
            stream.write_all(b"bye")?;
            server.stop(None);
            Ok(())
        },
    )
    .unwrap();
    let serving = spawn({
        let server = server.clone();
        move || server.serve_forever()
    });
    let mut reply = String::new();
    TcpStream::connect(server.local_addr()).unwrap().read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "bye");
    serving.take().unwrap().unwrap();
    assert!(server.is_closed());
    assert!(server.handle().is_closed());
}

#[test]
fn a_handler_reads_its_servers_address_and_stats_through_its_handle() {
    let server = StreamServer::with_handle(
        "127.0.0.1:0",
        |mut stream: TcpStream, _, server: &ServerHandle| -> io::Result<()> {
            let stats = server.stats();
            write!(stream, "{} {} {}", server.local_addr(), stats.accepted, stats.active)
        },
    )
    .unwrap();
    server.start().unwrap();
    for n in 1..=3 {
        let mut reply = String::new();
        TcpStream::connect(server.local_addr()).unwrap().read_to_string(&mut reply).unwrap();
        // This handler is the n-th accepted and the only one running.
        assert_eq!(reply, format!("{} {n} 1", server.local_addr()));
    }
    server.stop(None);
    assert_eq!(server.stats().handler_errors, 0);
}

#[test]
fn a_handle_does_not_keep_the_server_alive() {
    let server = StreamServer::new("127.0.0.1:0", |_: TcpStream, _| {}).unwrap();
    let handle = server.handle();
    let addr = server.local_addr();
    server.start().unwrap();
    let mut client = TcpStream::connect(addr).unwrap();
    let mut buf = [0; 1];
    assert_eq!(client.read(&mut buf).unwrap(), 0); // served: the handler dropped it
    assert_eq!(handle.stats().accepted, 1);
    handle.close(); // the accept loop ends: nothing holds the server now
    drop(server);
    assert!(handle.server().is_none());
    assert!(handle.is_closed());
    assert_eq!(handle.local_addr(), addr);
    assert_eq!(handle.stats().accepted, 1);
    handle.stop(None); // a no-op
}

/// A fresh directory for this test's socket files, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("verdant-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_unix_stream_server_serves_starts_stops_and_counts_like_the_tcp_one() {
    use verdant::net::UnixStream;
    use verdant::server::UnixStreamServer;

    let dir = TempDir::new("unix-server");
    let path = dir.0.join("echo.sock");
    let server = UnixStreamServer::bind(&path, |mut stream: UnixStream, _peer| -> io::Result<()> {
        let mut buf = [0; 64];
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            stream.write_all(&buf[..n])?;
        }
    })
    .unwrap()
    .with_pool(Pool::new(2));
    assert_eq!(server.local_addr().as_pathname(), Some(path.as_path()));
    let serving = spawn({
        let server = server.clone();
        move || server.serve_forever()
    });
    let clients: Vec<_> = (0..10u32)
        .map(|i| {
            let path = path.clone();
            spawn(move || {
                let mut stream = UnixStream::connect(&path).unwrap();
                let message = format!("client {i}");
                stream.write_all(message.as_bytes()).unwrap();
                let mut reply = vec![0; message.len()];
                stream.read_exact(&mut reply).unwrap();
                reply == message.as_bytes()
            })
        })
        .collect();
    for client in clients {
        assert!(client.get().unwrap());
    }
    assert_eq!(server.stats().accepted, 10);
    server.stop(None);
    serving.take().unwrap().unwrap();
    assert!(server.is_closed());
    assert_eq!(server.stats().handler_errors, 0);
    assert_eq!(server.stats().active, 0);
    assert!(server.start().is_err());
}

#[test]
fn a_unix_handler_reaches_its_server_and_its_errors_are_reported() {
    use verdant::net::{UnixListener, UnixStream};
    use verdant::server::{ServerHandle, UnixStreamServer};

    let dir = TempDir::new("unix-handle");
    let path = dir.0.join("s.sock");
    let errors: Rc<RefCell<Vec<String>>> = Rc::default();
    let server = UnixStreamServer::from_listener_with_handle(
        UnixListener::bind(&path).unwrap(),
        |_stream: UnixStream, _peer, server: &ServerHandle<UnixListener>| -> io::Result<()> {
            server.stop(None);
            Err(io::Error::other("refused"))
        },
    )
    .on_error({
        let errors = errors.clone();
        move |error| errors.borrow_mut().push(error.to_string())
    });
    let serving = spawn({
        let server = server.clone();
        move || server.serve_forever()
    });
    let mut reply = Vec::new();
    UnixStream::connect(&path).unwrap().read_to_end(&mut reply).unwrap();
    serving.take().unwrap().unwrap();
    assert!(server.is_closed());
    assert_eq!(errors.borrow().len(), 1);
    assert!(errors.borrow()[0].ends_with("failed: refused"), "{:?}", errors.borrow());
    assert_eq!(server.stats().handler_errors, 1);
}
