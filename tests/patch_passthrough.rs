//! What `verdant::patch` must leave alone: calls from plain threads and from a thread's
//! main code, files and stdout, sockets the user made non-blocking, and errors. These
//! tests pass with and without the hooks: they pin that the hooks change nothing here.

mod patch_support;

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use verdant::{spawn, yield_now};

fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

#[test]
fn a_plain_thread_gets_the_real_blocking_calls_and_no_hub() {
    patch_support::install();
    std::thread::spawn(|| {
        let (client, mut server) = pair();
        client.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        let started = Instant::now();
        let mut buf = [0; 8];
        assert_eq!((&client).read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
        // The kernel waited for the timeout (not an EAGAIN at once). It counts whole clock
        // ticks and may end up to one tick (at most 10 ms) early: hence 20, not 30.
        assert!(started.elapsed() >= Duration::from_millis(20), "the kernel timed it out");
        server.write_all(b"data").unwrap();
        assert_eq!((&client).read(&mut buf).unwrap(), 4);
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(!verdant::hub::has_hub(), "a hook made a hub on a plain thread");
    })
    .join()
    .unwrap();
}

#[test]
fn the_main_code_gets_the_real_blocking_calls_while_greenlets_wait() {
    patch_support::install();
    let (client, _server) = pair();
    client.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let g = spawn(move || r.set(true));
    let mut buf = [0; 8];
    // The main code is not a greenlet: its read blocks the thread; the greenlet waits.
    assert_eq!((&client).read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
    assert!(!ran.get());
    g.join();
}

/// The fds registered in any epoll instance of this process (from /proc).
fn fds_in_any_epoll() -> Vec<i32> {
    let mut registered = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        if target.to_string_lossy() != "anon_inode:[eventpoll]" {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            entry.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        for line in info.lines().filter(|line| line.starts_with("tfd:")) {
            if let Some(fd) = line.split_whitespace().nth(1).and_then(|fd| fd.parse().ok()) {
                registered.push(fd);
            }
        }
    }
    registered
}

fn flags(fd: i32) -> i32 {
    // SAFETY: F_GETFL takes no argument.
    unsafe { libc::fcntl(fd, libc::F_GETFL) }
}

#[test]
fn regular_files_and_stdout_are_never_registered_or_changed() {
    patch_support::install();
    let path = std::env::temp_dir().join(format!("verdant-patch-{}", std::process::id()));
    let (stdout_flags, path2) = (flags(1), path.clone());
    let g = spawn(move || {
        let mut file = std::fs::File::create(&path2).unwrap();
        file.write_all(b"a regular file").unwrap();
        drop(file);
        let mut file = std::fs::File::open(&path2).unwrap();
        let file_flags = flags(file.as_raw_fd());
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        std::io::stdout().write_all(b"").unwrap();
        println!("(a line on stdout from a greenlet)");
        verdant::sleep(Duration::from_millis(1)); // a hub turn: nothing pending for them
        let seen = fds_in_any_epoll();
        let unchanged = file_flags == flags(file.as_raw_fd());
        (text, file.as_raw_fd(), unchanged, seen)
    });
    let (text, file_fd, unchanged, registered) = g.get().unwrap();
    assert_eq!(text, "a regular file");
    assert!(unchanged, "the file's flags changed");
    assert!(!registered.contains(&file_fd), "the file's fd was registered with a hub");
    assert!(!registered.contains(&1), "stdout was registered with a hub");
    assert_eq!(flags(1), stdout_flags, "stdout's flags changed");
    std::fs::remove_file(path).unwrap();
}

/// Reads from a socket set non-blocking by `make_nonblocking`, in a greenlet: must fail
/// with `EAGAIN` at once, without parking (a greenlet spawned after it has not run yet).
fn nonblocking_read_fails_at_once(make_nonblocking: fn(&TcpStream)) {
    patch_support::install();
    let (client, _server) = pair();
    make_nonblocking(&client);
    let other_ran = Rc::new(Cell::new(false));
    let o = other_ran.clone();
    let reader = spawn(move || {
        let mut buf = [0; 8];
        let error = (&client).read(&mut buf).unwrap_err();
        (error.raw_os_error(), o.get())
    });
    let o = other_ran.clone();
    let other = spawn(move || o.set(true));
    assert_eq!(reader.get().unwrap(), (Some(libc::EAGAIN), false));
    other.join();
}

#[test]
fn a_socket_made_non_blocking_with_ioctl_gets_eagain_as_before() {
    // std's set_nonblocking uses ioctl(FIONBIO) on Linux.
    nonblocking_read_fails_at_once(|s| s.set_nonblocking(true).unwrap());
}

#[test]
fn a_socket_made_non_blocking_with_fcntl_gets_eagain_as_before() {
    nonblocking_read_fails_at_once(|s| {
        let fd = s.as_raw_fd();
        // SAFETY: F_SETFL with an int argument.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFL, flags(fd) | libc::O_NONBLOCK) }, 0);
    });
}

#[test]
fn a_socket_made_non_blocking_by_a_raw_syscall_gets_eagain_as_before() {
    nonblocking_read_fails_at_once(|s| {
        let fd = s.as_raw_fd();
        // SAFETY: the fcntl system call itself, bypassing libc and so the hooks.
        let r = unsafe {
            libc::syscall(libc::SYS_fcntl, fd, libc::F_SETFL, flags(fd) | libc::O_NONBLOCK)
        };
        assert_eq!(r, 0);
    });
}

#[test]
fn errors_come_back_unchanged() {
    patch_support::install();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // dropped
    let g = spawn(move || {
        let refused = TcpStream::connect(closed).unwrap_err().raw_os_error();
        let mut buf = [0u8; 4];
        // SAFETY: a valid buffer; fd -1 is invalid, which is the point.
        let bad = unsafe { libc::recv(-1, buf.as_mut_ptr().cast(), 4, 0) };
        (refused, bad, std::io::Error::last_os_error().raw_os_error())
    });
    assert_eq!(g.get().unwrap(), (Some(libc::ECONNREFUSED), -1, Some(libc::EBADF)));
    yield_now();
}
