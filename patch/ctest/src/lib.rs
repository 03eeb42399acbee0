//! Test support for verdant-patch: blocking socket code written in C (`src/helper.c`,
//! compiled by `build.rs` with optimisation and `_FORTIFY_SOURCE`), to show that the hooks
//! make C code cooperative too. Each function returns a count or fd, or `-errno`.

use std::ffi::{CString, c_char, c_int, c_long};
use std::net::SocketAddrV4;

unsafe extern "C" {
    fn ctest_connect(ip: *const c_char, port: c_int) -> c_int;
    fn ctest_recv(fd: c_int, buf: *mut c_char, len: c_long) -> c_long;
    fn ctest_recv_checked(fd: c_int, out: *mut c_char, len: c_long) -> c_long;
    fn ctest_fetch(
        ip: *const c_char,
        port: c_int,
        request: *const c_char,
        out: *mut c_char,
        outlen: c_long,
    ) -> c_long;
}

/// A blocking TCP connection made in C: the fd, or `-errno`.
pub fn connect(addr: SocketAddrV4) -> i32 {
    let ip = CString::new(addr.ip().to_string()).expect("no NUL in an IP");
    // SAFETY: a valid C string; the function owns nothing of ours after returning.
    unsafe { ctest_connect(ip.as_ptr(), addr.port().into()) }
}

/// One blocking `recv` made in C into `buf`: the count, or `-errno`.
pub fn recv(fd: i32, buf: &mut [u8]) -> i64 {
    // SAFETY: `buf` is valid for writes of its length.
    unsafe { ctest_recv(fd, buf.as_mut_ptr().cast(), buf.len() as c_long) }
}

/// One blocking `recv` made in C through glibc's checked `__recv_chk`: the count, or
/// `-errno`.
pub fn recv_checked(fd: i32, buf: &mut [u8]) -> i64 {
    // SAFETY: `buf` is valid for writes of its length (at most 256 bytes are written).
    unsafe { ctest_recv_checked(fd, buf.as_mut_ptr().cast(), buf.len() as c_long) }
}

/// Connects, sends `request`, reads until the peer closes, all in C: the bytes read, or
/// `Err(errno)`.
pub fn fetch(addr: SocketAddrV4, request: &str, max: usize) -> Result<Vec<u8>, i32> {
    let ip = CString::new(addr.ip().to_string()).expect("no NUL in an IP");
    let request = CString::new(request).expect("no NUL in the request");
    let mut out = vec![0u8; max];
    // SAFETY: valid C strings; `out` is valid for writes of `max` bytes.
    let n = unsafe {
        ctest_fetch(
            ip.as_ptr(),
            addr.port().into(),
            request.as_ptr(),
            out.as_mut_ptr().cast(),
            max as c_long,
        )
    };
    if n < 0 {
        return Err(-n as i32);
    }
    out.truncate(n as usize);
    Ok(out)
}
