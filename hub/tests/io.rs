//! Waiting for file descriptors: wait_readable/wait_writable and Registration.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use verdant_hub::io::{Interest, Registration, wait_readable, wait_writable};
use verdant_hub::{spawn, with_timeout, yield_now};

#[test]
fn wait_readable_times_out_with_timed_out() {
    let (_a, b) = UnixStream::pair().unwrap();
    let t = Instant::now();
    let err = wait_readable(&b, Some(Duration::from_millis(10))).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(t.elapsed() >= Duration::from_millis(10));
}

#[test]
fn wait_writable_returns_at_once_for_a_writable_socket() {
    let (a, _b) = UnixStream::pair().unwrap();
    wait_writable(&a, Some(Duration::from_secs(10))).unwrap();
}

#[test]
fn with_timeout_interrupts_an_io_wait() {
    let (_a, b) = UnixStream::pair().unwrap();
    let r = with_timeout(Duration::from_millis(10), || wait_readable(&b, None));
    assert!(r.is_err());
    // The fd was deregistered on the way out: waiting again works.
    let err = wait_readable(&b, Some(Duration::from_millis(1))).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
}

#[test]
fn a_registration_drives_a_nonblocking_read_loop() {
    let (mut writer, mut reader) = UnixStream::pair().unwrap();
    reader.set_nonblocking(true).unwrap();
    let g = spawn(move || {
        // SAFETY: `reader` outlives the registration, which is dropped before it.
        let registration = unsafe { Registration::new(reader.as_raw_fd()) }.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < 12 {
            match reader.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    registration.clear_ready(Interest::READABLE);
                    registration.wait(Interest::READABLE, None).unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        drop(registration);
        got
    });
    let t = std::thread::spawn(move || {
        for chunk in [&b"hello "[..], b"world!"] {
            std::thread::sleep(Duration::from_millis(5));
            writer.write_all(chunk).unwrap();
        }
    });
    assert_eq!(g.get().unwrap(), b"hello world!");
    t.join().unwrap();
}

#[test]
fn every_greenlet_waiting_on_one_fd_is_woken() {
    let (mut writer, reader) = UnixStream::pair().unwrap();
    // SAFETY: `reader` is dropped after the registration, at the end of the test.
    let registration = std::rc::Rc::new(unsafe { Registration::new(reader.as_raw_fd()) }.unwrap());
    registration.clear_ready(Interest::READABLE);
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let r = registration.clone();
            spawn(move || {
                r.wait(Interest::READABLE, Some(Instant::now() + Duration::from_secs(10))).is_ok()
            })
        })
        .collect();
    yield_now();
    writer.write_all(b"!").unwrap();
    for w in waiters {
        assert_eq!(w.get(), Ok(true));
    }
    drop(registration);
    drop(reader);
}

#[test]
fn an_fd_registered_already_is_a_clear_error() {
    let (_a, b) = UnixStream::pair().unwrap();
    // SAFETY: `b` is declared first, so it is dropped after the registration.
    let _registration = unsafe { Registration::new(b.as_raw_fd()) }.unwrap();
    let err = wait_readable(&b, Some(Duration::from_millis(1))).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
}
