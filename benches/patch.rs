//! Criterion benches of `verdant::patch`: what the hooks add.
//!
//! * A 64-byte round trip over loopback TCP, client greenlet to echo greenlet on one hub:
//!   the client on hooked `std::net` sockets (`write_all` + `read_exact`, i.e. one hooked
//!   `send` and one hooked `recv` per trip) against the same client on `verdant::net`.
//!   The echo side is `verdant::net` in both. Nearly all of each figure is the kernel's.
//! * Calls that pass through, against the same libc function called directly (found with
//!   `dlsym(RTLD_NEXT)`, as the hooks find it): one with no system call at all (a
//!   `clock_nanosleep` on a clock libc refuses by itself), so the figure is the hook's
//!   own cost; a `recv(MSG_DONTWAIT)` from the main code; and a `read` of an empty
//!   non-blocking pipe from a greenlet, where the fd table is consulted.

use std::ffi::{c_int, c_void};
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::Instant;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use verdant::net::{TcpListener, TcpStream};
use verdant::spawn;

/// A connected pair: the client as a std socket, the server side as a verdant one.
fn std_client_pair() -> (std::net::TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}

fn verdant_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}

/// `iters` round trips from a client greenlet running `client` against an echo greenlet.
fn round_trips<C: Read + Write + 'static>(
    iters: u64,
    mut client: C,
    mut server: TcpStream,
) -> std::time::Duration {
    let echo = spawn(move || {
        let mut buf = [0; 64];
        for _ in 0..iters {
            server.read_exact(&mut buf).unwrap();
            server.write_all(&buf).unwrap();
        }
    });
    let timed = spawn(move || {
        let (message, mut reply) = ([7u8; 64], [0; 64]);
        let t = Instant::now();
        for _ in 0..iters {
            client.write_all(&message).unwrap();
            client.read_exact(&mut reply).unwrap();
        }
        t.elapsed()
    });
    let elapsed = timed.get().unwrap();
    echo.join();
    elapsed
}

fn round_trip(c: &mut Criterion) {
    verdant::patch::install();
    let mut group = c.benchmark_group("patch/64B_round_trip");
    group.bench_function("hooked_std_client", |b| {
        b.iter_custom(|iters| {
            let (client, server) = std_client_pair();
            round_trips(iters, client, server)
        })
    });
    group.bench_function("verdant_net_client", |b| {
        b.iter_custom(|iters| {
            let (client, server) = verdant_pair();
            round_trips(iters, client, server)
        })
    });
    group.finish();
}

/// libc's own definition of `name`, bypassing the hook.
fn real<F: Copy>(name: &std::ffi::CStr) -> F {
    // SAFETY: RTLD_NEXT from the executable finds libc's definition.
    let address = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    assert!(!address.is_null());
    assert_eq!(size_of::<F>(), size_of::<usize>());
    // SAFETY: `F` is the function pointer type of that symbol (the callers say which).
    unsafe { std::mem::transmute_copy(&address) }
}

type ClockNanosleep = unsafe extern "C" fn(
    libc::clockid_t,
    c_int,
    *const libc::timespec,
    *mut libc::timespec,
) -> c_int;
type Recv = unsafe extern "C" fn(c_int, *mut c_void, usize, c_int) -> isize;
type ReadFn = unsafe extern "C" fn(c_int, *mut c_void, usize) -> isize;

type Group<'a> = BenchmarkGroup<'a, WallTime>;

fn pass_through(c: &mut Criterion) {
    verdant::patch::install();
    let mut group = c.benchmark_group("patch/pass_through");
    clock_nanosleep_no_syscall(&mut group);
    recv_dontwait_main_code(&mut group);
    read_empty_pipe_in_greenlet(&mut group);
    group.finish();
}

/// The hook's own cost: a call that makes no system call at all.
fn clock_nanosleep_no_syscall(group: &mut Group<'_>) {
    let ts = libc::timespec { tv_sec: 0, tv_nsec: 1 };
    let real_clock_nanosleep: ClockNanosleep = real(c"clock_nanosleep");
    // glibc refuses CLOCK_THREAD_CPUTIME_ID itself: no system call, only the call's cost.
    group.bench_function("clock_nanosleep_no_syscall/hooked", |b| {
        b.iter(|| {
            // SAFETY: a valid timespec.
            unsafe {
                libc::clock_nanosleep(
                    libc::CLOCK_THREAD_CPUTIME_ID,
                    0,
                    black_box(&ts),
                    std::ptr::null_mut(),
                )
            }
        })
    });
    group.bench_function("clock_nanosleep_no_syscall/real", |b| {
        b.iter(|| {
            // SAFETY: as above.
            unsafe {
                real_clock_nanosleep(
                    libc::CLOCK_THREAD_CPUTIME_ID,
                    0,
                    black_box(&ts),
                    std::ptr::null_mut(),
                )
            }
        })
    });
}

/// A socket call from the main code (not a greenlet): passes through at the gate.
fn recv_dontwait_main_code(group: &mut Group<'_>) {
    let (client, _server) = std_client_pair();
    let fd = client.as_raw_fd();
    let real_recv: Recv = real(c"recv");
    let mut buf = [0u8; 64];
    let buf = buf.as_mut_ptr().cast::<c_void>();
    group.bench_function("recv_dontwait_main_code/hooked", |b| {
        // SAFETY: a valid buffer and socket; EAGAIN every time.
        b.iter(|| unsafe { libc::recv(black_box(fd), buf, 64, libc::MSG_DONTWAIT) })
    });
    group.bench_function("recv_dontwait_main_code/real", |b| {
        // SAFETY: as above.
        b.iter(|| unsafe { real_recv(black_box(fd), buf, 64, libc::MSG_DONTWAIT) })
    });
}

/// A `read` from a greenlet on a pipe: passes through after a look at the fd table.
fn read_empty_pipe_in_greenlet(group: &mut Group<'_>) {
    let mut fds = [0; 2];
    // SAFETY: writes two fds.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) }, 0);
    let pipe = fds[0];
    let real_read: ReadFn = real(c"read");
    // Each measurement runs inside a greenlet, where the hook looks the fd up in its table.
    group.bench_function("read_empty_pipe_in_greenlet/hooked", |b| {
        b.iter_custom(|iters| {
            spawn(move || {
                let mut byte = 0u8;
                let t = Instant::now();
                for _ in 0..iters {
                    // SAFETY: one byte into a local; EAGAIN every time.
                    black_box(unsafe { libc::read(black_box(pipe), (&raw mut byte).cast(), 1) });
                }
                t.elapsed()
            })
            .get()
            .unwrap()
        })
    });
    group.bench_function("read_empty_pipe_in_greenlet/real", |b| {
        b.iter_custom(|iters| {
            spawn(move || {
                let mut byte = 0u8;
                let t = Instant::now();
                for _ in 0..iters {
                    // SAFETY: as above.
                    black_box(unsafe { real_read(black_box(pipe), (&raw mut byte).cast(), 1) });
                }
                t.elapsed()
            })
            .get()
            .unwrap()
        })
    });
}

criterion_group!(benches, round_trip, pass_through);
criterion_main!(benches);
