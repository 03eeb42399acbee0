//! The data hooks: `recv`, `recvfrom`, `recvmsg`, `send`, `sendto`, `sendmsg`, and
//! `read`, `write`, `readv`, `writev` on sockets (with glibc's `_FORTIFY_SOURCE` forms
//! `__recv_chk`, `__recvfrom_chk`, `__read_chk`, which C compiled with optimisation calls
//! instead).
//!
//! Each passes straight through unless [`gate::blocking_socket`] says the caller is a
//! greenlet and the fd a socket the user left blocking, and the caller did not pass
//! `MSG_DONTWAIT` itself. Then the call is made with `MSG_DONTWAIT` (`read` and `write`
//! on a socket are `recv` and `send` with no flags, `readv` and `writev` are `recvmsg` and
//! `sendmsg`) and [`cooperate::run`] parks the greenlet whenever it would block.

use std::ffi::{c_int, c_void};

use libc::{iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use crate::cooperate::{self, Direction, Shape};
use crate::fds::{self, Fd, Kind};
use crate::gate;
use crate::real;

/// `flags`, plus `MSG_DONTWAIT` for a non-blocking attempt.
fn with_dontwait(flags: c_int, nonblocking: bool) -> c_int {
    if nonblocking { flags | libc::MSG_DONTWAIT } else { flags }
}

/// How a receive of `len` bytes with `flags` ends: `MSG_WAITALL` on a stream waits for
/// all of it; anything else returns what the first successful attempt got.
fn receive_shape(entry: Fd, len: usize, flags: c_int) -> Shape {
    let peek = flags & libc::MSG_PEEK != 0;
    if flags & libc::MSG_WAITALL != 0 && entry.kind == Kind::Stream && !peek {
        Shape::All { total: len }
    } else {
        Shape::One { len, peek }
    }
}

/// How a send of `len` bytes ends: a blocking send on a stream queues all of it; a
/// datagram goes whole or not at all.
fn send_shape(entry: Fd, len: usize) -> Shape {
    if entry.kind == Kind::Stream {
        Shape::All { total: len }
    } else {
        Shape::One { len, peek: false }
    }
}

/// Whether this call may be made cooperative: a blocking socket in a greenlet, and the
/// caller did not ask for a non-blocking call itself.
#[inline(always)]
fn cooperative(fd: c_int, flags: c_int) -> Option<Fd> {
    if flags & libc::MSG_DONTWAIT != 0 {
        return None;
    }
    gate::blocking_socket(fd)
}

/// `recv(2)`, cooperative on a blocking socket in a greenlet.
///
/// # Safety
///
/// As for libc's `recv`: `buf` is valid for writes of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    if let Some(entry) = cooperative(fd, flags) {
        return cooperate::run(
            fd,
            entry,
            Direction::Read,
            receive_shape(entry, len, flags),
            |done, nb| {
                // SAFETY: `done <= len`: the rest of the caller's buffer.
                unsafe {
                    real::recv(
                        fd,
                        buf.cast::<u8>().add(done).cast(),
                        len - done,
                        with_dontwait(flags, nb),
                    )
                }
            },
        );
    }
    // SAFETY: the caller's own call.
    unsafe { real::recv(fd, buf, len, flags) }
}

/// `recvfrom(2)`, cooperative on a blocking socket in a greenlet.
///
/// # Safety
///
/// As for libc's `recvfrom`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    if let Some(entry) = cooperative(fd, flags) {
        return cooperate::run(
            fd,
            entry,
            Direction::Read,
            receive_shape(entry, len, flags),
            |done, nb| {
                // SAFETY: `done <= len`; the address arguments are the caller's.
                unsafe {
                    real::recvfrom(
                        fd,
                        buf.cast::<u8>().add(done).cast(),
                        len - done,
                        with_dontwait(flags, nb),
                        addr,
                        addrlen,
                    )
                }
            },
        );
    }
    // SAFETY: the caller's own call.
    unsafe { real::recvfrom(fd, buf, len, flags, addr, addrlen) }
}

/// `recvmsg(2)`, cooperative on a blocking socket in a greenlet.
///
/// # Safety
///
/// As for libc's `recvmsg`: `msg` and the buffers it names are valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    if let Some(entry) = cooperative(fd, flags) {
        // SAFETY: the caller's msghdr is valid.
        let len = unsafe { iov_total(msg) };
        return cooperate::run(
            fd,
            entry,
            Direction::Read,
            receive_shape(entry, len, flags),
            |done, nb| {
                // SAFETY: the caller's msghdr and buffers, or the rest of them after `done`.
                unsafe { msg_rest(msg, done, |m| real::recvmsg(fd, m, with_dontwait(flags, nb))) }
            },
        );
    }
    // SAFETY: the caller's own call.
    unsafe { real::recvmsg(fd, msg, flags) }
}

/// `send(2)`, cooperative on a blocking socket in a greenlet: on a stream socket it
/// returns once all of `buf` is queued, as the blocking call does.
///
/// # Safety
///
/// As for libc's `send`: `buf` is valid for reads of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    if let Some(entry) = cooperative(fd, flags) {
        return cooperate::run(fd, entry, Direction::Write, send_shape(entry, len), |done, nb| {
            // SAFETY: `done <= len`: the rest of the caller's buffer.
            unsafe {
                real::send(
                    fd,
                    buf.cast::<u8>().add(done).cast(),
                    len - done,
                    with_dontwait(flags, nb),
                )
            }
        });
    }
    // SAFETY: the caller's own call.
    unsafe { real::send(fd, buf, len, flags) }
}

/// `sendto(2)`, cooperative on a blocking socket in a greenlet.
///
/// # Safety
///
/// As for libc's `sendto`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    addrlen: socklen_t,
) -> ssize_t {
    if let Some(entry) = cooperative(fd, flags) {
        return cooperate::run(fd, entry, Direction::Write, send_shape(entry, len), |done, nb| {
            // SAFETY: `done <= len`; the address is the caller's.
            unsafe {
                real::sendto(
                    fd,
                    buf.cast::<u8>().add(done).cast(),
                    len - done,
                    with_dontwait(flags, nb),
                    addr,
                    addrlen,
                )
            }
        });
    }
    // SAFETY: the caller's own call.
    unsafe { real::sendto(fd, buf, len, flags, addr, addrlen) }
}

/// `sendmsg(2)`, cooperative on a blocking socket in a greenlet. After a partial send on
/// a stream, the rest goes without the control data (already sent with the first part).
///
/// # Safety
///
/// As for libc's `sendmsg`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    if let Some(entry) = cooperative(fd, flags) {
        // SAFETY: the caller's msghdr is valid.
        let len = unsafe { iov_total(msg) };
        return cooperate::run(fd, entry, Direction::Write, send_shape(entry, len), |done, nb| {
            // SAFETY: the caller's msghdr (only read), or the rest of it after `done`.
            unsafe {
                msg_rest(msg.cast_mut(), done, |m| real::sendmsg(fd, m, with_dontwait(flags, nb)))
            }
        });
    }
    // SAFETY: the caller's own call.
    unsafe { real::sendmsg(fd, msg, flags) }
}

/// `read(2)`: on a blocking socket in a greenlet, a cooperative `recv` with no flags;
/// any other fd (files, pipes, terminals) passes through untouched.
///
/// # Safety
///
/// As for libc's `read`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t {
    if let Some(entry) = gate::blocking_socket(fd) {
        let shape = Shape::One { len, peek: false };
        return cooperate::run(fd, entry, Direction::Read, shape, |done, nb| {
            // SAFETY: `done` is 0 for `Shape::One`: the caller's buffer.
            let rest = unsafe { buf.cast::<u8>().add(done).cast() };
            if !nb {
                // SAFETY: the caller's own call.
                return unsafe { real::read(fd, rest, len - done) };
            }
            // SAFETY: as above; a socket's `read` is `recv` with no flags.
            let r = unsafe { real::recv(fd, rest, len - done, libc::MSG_DONTWAIT) };
            // SAFETY: as above.
            not_a_socket_after_all(fd, r, || unsafe { real::read(fd, rest, len - done) })
        });
    }
    // SAFETY: the caller's own call.
    unsafe { real::read(fd, buf, len) }
}

/// `write(2)`: on a blocking socket in a greenlet, a cooperative `send` with no flags
/// (all of `buf` is queued before it returns); any other fd passes through untouched.
///
/// # Safety
///
/// As for libc's `write`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t {
    if let Some(entry) = gate::blocking_socket(fd) {
        return cooperate::run(fd, entry, Direction::Write, send_shape(entry, len), |done, nb| {
            // SAFETY: `done <= len`: the rest of the caller's buffer.
            let rest = unsafe { buf.cast::<u8>().add(done).cast() };
            if !nb {
                // SAFETY: the caller's own call, on the rest.
                return unsafe { real::write(fd, rest, len - done) };
            }
            // SAFETY: as above; a socket's `write` is `send` with no flags.
            let r = unsafe { real::send(fd, rest, len - done, libc::MSG_DONTWAIT) };
            // SAFETY: as above.
            not_a_socket_after_all(fd, r, || unsafe { real::write(fd, rest, len - done) })
        });
    }
    // SAFETY: the caller's own call.
    unsafe { real::write(fd, buf, len) }
}

/// `readv(2)`: on a blocking socket in a greenlet, a cooperative `recvmsg`.
///
/// # Safety
///
/// As for libc's `readv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    if let Some(entry) = gate::blocking_socket(fd) {
        // SAFETY: a msghdr naming the caller's iovecs (recvmsg does not write to them).
        let mut msg = unsafe { iov_msg(iov, iovcnt) };
        // SAFETY: as above.
        let len = unsafe { iov_total(&msg) };
        let shape = Shape::One { len, peek: false };
        return cooperate::run(fd, entry, Direction::Read, shape, |_, nb| {
            if !nb {
                // SAFETY: the caller's own call.
                return unsafe { real::readv(fd, iov, iovcnt) };
            }
            // SAFETY: the caller's buffers.
            let r = unsafe { real::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
            // SAFETY: as above.
            not_a_socket_after_all(fd, r, || unsafe { real::readv(fd, iov, iovcnt) })
        });
    }
    // SAFETY: the caller's own call.
    unsafe { real::readv(fd, iov, iovcnt) }
}

/// `writev(2)`: on a blocking socket in a greenlet, a cooperative `sendmsg` (all of it is
/// queued on a stream before it returns).
///
/// # Safety
///
/// As for libc's `writev`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    if let Some(entry) = gate::blocking_socket(fd) {
        // SAFETY: a msghdr naming the caller's iovecs.
        let mut msg = unsafe { iov_msg(iov, iovcnt) };
        // SAFETY: as above.
        let len = unsafe { iov_total(&msg) };
        return cooperate::run(fd, entry, Direction::Write, send_shape(entry, len), |done, nb| {
            if !nb && done == 0 {
                // SAFETY: the caller's own call.
                return unsafe { real::writev(fd, iov, iovcnt) };
            }
            let flags = if nb { libc::MSG_DONTWAIT } else { 0 };
            // SAFETY: the caller's buffers, or the rest of them after `done`.
            let r = unsafe { msg_rest(&mut msg, done, |m| real::sendmsg(fd, m, flags)) };
            // SAFETY: as above.
            not_a_socket_after_all(fd, r, || unsafe { real::writev(fd, iov, iovcnt) })
        });
    }
    // SAFETY: the caller's own call.
    unsafe { real::writev(fd, iov, iovcnt) }
}

/// glibc's checked `recv` (`_FORTIFY_SOURCE`): aborts if `len` exceeds the buffer, then
/// is [`recv`].
///
/// # Safety
///
/// As for glibc's `__recv_chk`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __recv_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
) -> ssize_t {
    if !gate::installed() {
        // SAFETY: the caller's own call.
        return unsafe { real::__recv_chk(fd, buf, len, buflen, flags) };
    }
    check_len(len, buflen);
    // SAFETY: `len` fits the caller's buffer.
    unsafe { recv(fd, buf, len, flags) }
}

/// glibc's checked `recvfrom`.
///
/// # Safety
///
/// As for glibc's `__recvfrom_chk`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    if !gate::installed() {
        // SAFETY: the caller's own call.
        return unsafe { real::__recvfrom_chk(fd, buf, len, buflen, flags, addr, addrlen) };
    }
    check_len(len, buflen);
    // SAFETY: `len` fits the caller's buffer.
    unsafe { recvfrom(fd, buf, len, flags, addr, addrlen) }
}

/// glibc's checked `read`.
///
/// # Safety
///
/// As for glibc's `__read_chk`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __read_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
) -> ssize_t {
    if !gate::installed() {
        // SAFETY: the caller's own call.
        return unsafe { real::__read_chk(fd, buf, len, buflen) };
    }
    check_len(len, buflen);
    // SAFETY: `len` fits the caller's buffer.
    unsafe { read(fd, buf, len) }
}

unsafe extern "C" {
    /// glibc's "buffer overflow detected" abort.
    fn __chk_fail() -> !;
}

/// What `_FORTIFY_SOURCE` checks: the length asked for fits the buffer.
fn check_len(len: size_t, buflen: size_t) {
    if len > buflen {
        // SAFETY: glibc's abort for this very case; never returns.
        unsafe { __chk_fail() }
    }
}

/// An fd the table took for a socket answered `ENOTSOCK` (it was closed and reopened as a
/// file behind the hooks' back): forget it and make the plain call.
fn not_a_socket_after_all(fd: c_int, r: isize, plain: impl FnOnce() -> isize) -> isize {
    if r < 0 && gate::errno() == libc::ENOTSOCK {
        fds::forget(fd);
        return plain();
    }
    r
}

/// A msghdr that names just `iov` (what `readv`/`writev` become).
///
/// # Safety
///
/// `iov` is valid for `iovcnt` entries (or the kernel reports the error).
unsafe fn iov_msg(iov: *const iovec, iovcnt: c_int) -> msghdr {
    // SAFETY: msghdr is plain data; all-zero is "no name, no control, no iovecs".
    let mut msg: msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.cast_mut();
    msg.msg_iovlen = iovcnt.max(0) as usize;
    msg
}

/// The total length of `msg`'s iovecs.
///
/// # Safety
///
/// `msg` is valid, and so are its `msg_iovlen` iovecs.
unsafe fn iov_total(msg: *const msghdr) -> usize {
    // SAFETY: the caller's promise.
    let iovs = unsafe { iovecs(msg) };
    iovs.iter().fold(0usize, |total, iov| total.saturating_add(iov.iov_len))
}

/// `msg`'s iovecs as a slice (empty if none).
///
/// # Safety
///
/// As for [`iov_total`].
unsafe fn iovecs<'a>(msg: *const msghdr) -> &'a [iovec] {
    // SAFETY: the caller's promise.
    let msg = unsafe { &*msg };
    if msg.msg_iov.is_null() || msg.msg_iovlen == 0 {
        return &[];
    }
    // SAFETY: the caller's promise.
    unsafe { std::slice::from_raw_parts(msg.msg_iov, msg.msg_iovlen) }
}

/// Calls `call` with `msg` itself when nothing was moved yet, else with a copy that names
/// only the bytes after the first `done` (no name, no control data: both went with the
/// first part).
///
/// # Safety
///
/// As for [`iov_total`].
unsafe fn msg_rest(
    msg: *mut msghdr,
    done: usize,
    call: impl FnOnce(*mut msghdr) -> isize,
) -> isize {
    if done == 0 {
        return call(msg);
    }
    // SAFETY: the caller's promise.
    let iovs = unsafe { iovecs(msg) };
    let mut skip = done;
    let mut rest: Vec<iovec> = Vec::with_capacity(iovs.len());
    for iov in iovs {
        if skip >= iov.iov_len {
            skip -= iov.iov_len;
            continue;
        }
        // SAFETY: `skip < iov_len`: still inside this iovec's buffer.
        let base = unsafe { iov.iov_base.cast::<u8>().add(skip) };
        rest.push(iovec { iov_base: base.cast(), iov_len: iov.iov_len - skip });
        skip = 0;
    }
    // SAFETY: plain data, as in `iov_msg`.
    let mut part: msghdr = unsafe { std::mem::zeroed() };
    part.msg_iov = rest.as_mut_ptr();
    part.msg_iovlen = rest.len();
    call(&mut part)
}
