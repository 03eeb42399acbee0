//! `poll`, `select` and name resolution, unchanged, in greenlets under `verdant::patch`:
//! waits on pipes and sockets park only their greenlet; host names resolve on resolver
//! threads. Each cooperative test fails without the hooks (see `patch_support`).

mod patch_support;

use std::net::{TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use verdant::spawn;

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: writes two fds into the array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fresh fds, owned from here on.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn write_byte(fd: i32) {
    // SAFETY: one byte from a valid buffer.
    assert_eq!(unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) }, 1);
}

#[test]
fn poll_on_many_pipes_waits_cooperatively_and_reports_the_one_that_is_ready() {
    patch_support::install();
    let pipes: Vec<_> = (0..100).map(|_| pipe()).collect();
    let mut pfds: Vec<libc::pollfd> = pipes
        .iter()
        .map(|(read, _)| libc::pollfd { fd: read.as_raw_fd(), events: libc::POLLIN, revents: 0 })
        .collect();
    let poller = spawn(move || {
        // 5 s: the bound when poll blocks the thread (the writer then never runs in time).
        // SAFETY: a valid array of pollfds.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 5000) };
        let ready: Vec<usize> = (0..pfds.len()).filter(|&i| pfds[i].revents != 0).collect();
        (n, ready, pfds[42].revents)
    });
    let writer_fd = pipes[42].1.as_raw_fd();
    let writer = spawn(move || write_byte(writer_fd));
    writer.join();
    assert_eq!(poller.get().unwrap(), (1, vec![42], libc::POLLIN));
}

#[test]
fn select_on_a_socket_waits_cooperatively() {
    patch_support::install();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    let selector = spawn(move || {
        // SAFETY: fd_set is plain data; FD_ZERO/FD_SET on a local set.
        let mut read: libc::fd_set = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `fd` is below FD_SETSIZE.
        unsafe {
            libc::FD_ZERO(&mut read);
            libc::FD_SET(fd, &mut read);
        }
        let mut tv = libc::timeval { tv_sec: 5, tv_usec: 0 };
        let none = std::ptr::null_mut();
        // SAFETY: valid set and timeval.
        let n = unsafe { libc::select(fd + 1, &mut read, none, none, &mut tv) };
        // SAFETY: reads the set the call filled.
        (n, unsafe { libc::FD_ISSET(fd, &read) })
    });
    let connector = spawn(move || drop(std::net::TcpStream::connect(addr).unwrap()));
    connector.join();
    assert_eq!(selector.get().unwrap(), (1, true));
    drop(listener);
}

unsafe extern "C" {
    fn gethostbyname(name: *const std::ffi::c_char) -> *mut libc::hostent;
}

fn resolver_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim() == "verdant-dns")
        })
        .count()
}

#[test]
fn host_names_resolve_on_resolver_threads_and_connect() {
    patch_support::install();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let lookups: Vec<_> = (0..20)
        .map(|_| {
            spawn(move || {
                let addrs: Vec<_> = ("localhost", port).to_socket_addrs().unwrap().collect();
                let connected = std::net::TcpStream::connect(("localhost", port)).is_ok();
                (addrs.iter().any(|a| a.ip().is_loopback() && a.port() == port), connected)
            })
        })
        .collect();
    for lookup in lookups {
        assert_eq!(lookup.get().unwrap(), (true, true));
    }
    assert!(resolver_threads() > 0, "getaddrinfo did not go to a resolver thread");
}

#[test]
fn gethostbyname_in_a_greenlet_resolves_on_a_resolver_thread() {
    patch_support::install();
    let g = spawn(|| {
        // SAFETY: a valid C string; the result is read before this greenlet's next call.
        let entry = unsafe { gethostbyname(c"localhost".as_ptr()) };
        assert!(!entry.is_null());
        // SAFETY: a valid hostent with at least one address of h_length bytes.
        unsafe {
            let entry = &*entry;
            let first = *entry.h_addr_list;
            (entry.h_addrtype, std::slice::from_raw_parts(first.cast::<u8>(), 4).to_vec())
        }
    });
    assert_eq!(g.get().unwrap(), (libc::AF_INET, vec![127, 0, 0, 1]));
    assert!(resolver_threads() > 0, "gethostbyname did not go to a resolver thread");
}
