//! The real libc functions behind the hooks, each found once with
//! `dlsym(RTLD_NEXT, name)`.
//!
//! A hook's symbol shadows libc's for the whole process, this crate included: calling
//! `libc::recv` from here would call the hook again. So every call to the real function
//! goes through this module, never through the `libc` crate's declarations.
//!
//! The look-up is lazy (the first call of each function, from any thread) and also done
//! eagerly by [`install`](crate::install), so that a hook reached from a signal handler
//! later never runs `dlsym`. `dlsym` may call `malloc`, which is not hooked, and nothing
//! it calls is: the set-up cannot re-enter a hook.

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{
    addrinfo, hostent, iovec, msghdr, nfds_t, pollfd, sigaction as sigaction_t, sigset_t, size_t,
    sockaddr, socklen_t, ssize_t, timespec,
};

/// The address of one real libc function, resolved on first use.
pub(crate) struct Real {
    /// The symbol's name, NUL-terminated.
    name: &'static [u8],
    /// 0 until resolved; then the function's address (never changes again).
    address: AtomicUsize,
}

impl Real {
    const fn new(name: &'static [u8]) -> Real {
        Real { name, address: AtomicUsize::new(0) }
    }

    /// The function's address. `Relaxed` is enough: the address points into libc's code,
    /// mapped before any of this runs, and publishes no other data.
    #[inline(always)]
    fn address(&self) -> usize {
        let address = self.address.load(Ordering::Relaxed);
        if address != 0 { address } else { self.resolve() }
    }

    #[cold]
    #[inline(never)]
    fn resolve(&self) -> usize {
        // SAFETY: `name` is NUL-terminated (every `Real` is made by the macros below from
        // a string literal with "\0" appended); RTLD_NEXT asks for the next definition
        // after this object's, which is libc's.
        let address = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr().cast()) };
        if address.is_null() {
            missing(self.name);
        }
        self.address.store(address as usize, Ordering::Relaxed);
        address as usize
    }
}

/// No libc definition behind a hook: a fully static binary, where `dlsym` finds nothing.
/// Nothing sensible can be returned to the caller, so say why and abort.
#[cold]
fn missing(name: &[u8]) -> ! {
    let name = &name[..name.len() - 1];
    let parts: [&[u8]; 3] = [
        b"verdant-patch: dlsym(RTLD_NEXT) found no libc definition of `",
        name,
        b"` (a fully static binary?); see docs/patch.md on -Wl,--wrap\n",
    ];
    for part in parts {
        // SAFETY: a raw write(2) of a valid buffer to stderr; a raw syscall, so no hook.
        unsafe { libc::syscall(libc::SYS_write, 2, part.as_ptr(), part.len()) };
    }
    std::process::abort();
}

/// Declares, for each listed libc function, an `unsafe fn` of the same name and signature
/// that calls the real one, and next to it a module of the same name holding its [`Real`]
/// cell (functions and modules live in different namespaces).
macro_rules! real_functions {
    ($( fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty; )*) => {
        $(
            #[allow(non_snake_case)]
            mod $name {
                pub(super) static REAL: super::Real =
                    super::Real::new(concat!(stringify!($name), "\0").as_bytes());
            }

            #[doc = concat!("Calls libc's real `", stringify!($name), "`.")]
            ///
            /// # Safety
            ///
            /// The contract of the libc function of that name.
            #[inline(always)]
            pub(crate) unsafe fn $name($($arg: $ty),*) -> $ret {
                let address = $name::REAL.address();
                // SAFETY: the address is libc's definition of this very symbol, whose C
                // prototype is the signature declared here.
                let f = unsafe { std::mem::transmute::<usize, unsafe extern "C" fn($($ty),*) -> $ret>(address) };
                // SAFETY: the caller upholds the function's contract.
                unsafe { f($($arg),*) }
            }
        )*

        /// Resolves every real function now (see the module doc).
        pub(crate) fn resolve_all() {
            $( $name::REAL.address(); )*
            resolve_variadic();
        }
    };
}

real_functions! {
    fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int;
    fn socketpair(domain: c_int, ty: c_int, protocol: c_int, sv: *mut c_int) -> c_int;
    fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int;
    fn close(fd: c_int) -> c_int;
    fn dup(fd: c_int) -> c_int;
    fn dup2(fd: c_int, new: c_int) -> c_int;
    fn dup3(fd: c_int, new: c_int, flags: c_int) -> c_int;
    fn getsockopt(fd: c_int, level: c_int, name: c_int, value: *mut c_void, len: *mut socklen_t) -> c_int;
    fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t;
    fn recvfrom(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t) -> ssize_t;
    fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t;
    fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t;
    fn sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int, addr: *const sockaddr, addrlen: socklen_t) -> ssize_t;
    fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t;
    fn __recv_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int) -> ssize_t;
    fn __recvfrom_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t) -> ssize_t;
    fn __read_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t) -> ssize_t;
    fn __poll_chk(fds: *mut pollfd, nfds: nfds_t, timeout: c_int, fdslen: size_t) -> c_int;
    fn read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t;
    fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t;
    fn readv(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t;
    fn writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t;
    fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int;
    fn ppoll(fds: *mut pollfd, nfds: nfds_t, timeout: *const timespec, sigmask: *const sigset_t) -> c_int;
    fn select(nfds: c_int, read: *mut libc::fd_set, write: *mut libc::fd_set, except: *mut libc::fd_set, timeout: *mut libc::timeval) -> c_int;
    fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int;
    fn clock_nanosleep(clock: libc::clockid_t, flags: c_int, req: *const timespec, rem: *mut timespec) -> c_int;
    fn sleep(seconds: c_uint) -> c_uint;
    fn usleep(usec: libc::useconds_t) -> c_int;
    fn getaddrinfo(node: *const c_char, service: *const c_char, hints: *const addrinfo, res: *mut *mut addrinfo) -> c_int;
    fn freeaddrinfo(res: *mut addrinfo) -> ();
    fn gethostbyname(name: *const c_char) -> *mut hostent;
    fn gethostbyname_r(name: *const c_char, ret: *mut hostent, buf: *mut c_char, buflen: size_t, result: *mut *mut hostent, h_errnop: *mut c_int) -> c_int;
    fn sigaction(sig: c_int, act: *const sigaction_t, old: *mut sigaction_t) -> c_int;
    fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t;
}

/// `fcntl` and `ioctl` are C-variadic: they are called through a variadic pointer, with
/// the one optional argument passed on as a machine word (see `socket.rs` for why the
/// hooks may read it so).
macro_rules! real_variadic {
    ($( fn $name:ident($a:ident: $ta:ty, $b:ident: $tb:ty, ...) -> $ret:ty; )*) => {
        $(
            #[allow(non_snake_case)]
            mod $name {
                pub(super) static REAL: super::Real =
                    super::Real::new(concat!(stringify!($name), "\0").as_bytes());
            }

            #[doc = concat!("Calls libc's real `", stringify!($name), "` with one optional argument.")]
            ///
            /// # Safety
            ///
            /// The contract of the libc function for that command.
            #[inline(always)]
            pub(crate) unsafe fn $name($a: $ta, $b: $tb, arg: usize) -> $ret {
                let address = $name::REAL.address();
                // SAFETY: the address is libc's definition of this variadic function.
                let f = unsafe { std::mem::transmute::<usize, unsafe extern "C" fn($ta, $tb, ...) -> $ret>(address) };
                // SAFETY: the caller upholds the contract for this command; an argument
                // the command does not take is ignored by libc.
                unsafe { f($a, $b, arg) }
            }
        )*

        fn resolve_variadic() {
            $( $name::REAL.address(); )*
        }
    };
}

real_variadic! {
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    fn fcntl64(fd: c_int, cmd: c_int, ...) -> c_int;
    fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
}
