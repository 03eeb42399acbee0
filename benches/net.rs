//! Criterion benches of `verdant::net`: a 64-byte round trip over loopback TCP between two
//! greenlets on one hub (the unit of W7), the same over UDP, and connect + accept + close;
//! next to the same TCP round trip between two OS threads with blocking std sockets.
//!
//! Nearly all of each figure is the kernel's: two `send`s and two `recv`s, plus an
//! `epoll_wait` whenever both greenlets are parked.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use verdant::net::{TcpListener, TcpStream, UdpSocket};
use verdant::spawn;

fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}

fn tcp_round_trip(c: &mut Criterion) {
    c.bench_function("tcp/64B_round_trip_two_greenlets", |b| {
        b.iter_custom(|iters| {
            let (mut client, mut server) = tcp_pair();
            let echo = spawn(move || {
                let mut buf = [0; 64];
                for _ in 0..iters {
                    server.read_exact(&mut buf).unwrap();
                    server.write_all(&buf).unwrap();
                }
            });
            let message = [7u8; 64];
            let mut reply = [0; 64];
            let t = Instant::now();
            for _ in 0..iters {
                client.write_all(&message).unwrap();
                client.read_exact(&mut reply).unwrap();
            }
            let elapsed = t.elapsed();
            echo.join();
            elapsed
        })
    });
}

fn std_threads_round_trip(c: &mut Criterion) {
    c.bench_function("tcp/64B_round_trip_two_os_threads_std", |b| {
        b.iter_custom(|iters| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            client.set_nodelay(true).unwrap();
            let echo = std::thread::spawn(move || {
                let mut buf = [0; 64];
                for _ in 0..iters {
                    server.read_exact(&mut buf).unwrap();
                    server.write_all(&buf).unwrap();
                }
            });
            let mut reply = [0; 64];
            let t = Instant::now();
            for _ in 0..iters {
                client.write_all(&[7; 64]).unwrap();
                client.read_exact(&mut reply).unwrap();
            }
            let elapsed = t.elapsed();
            echo.join().unwrap();
            elapsed
        })
    });
}

fn udp_round_trip(c: &mut Criterion) {
    c.bench_function("udp/64B_round_trip_two_greenlets", |b| {
        b.iter_custom(|iters| {
            let (a, b) =
                (UdpSocket::bind("127.0.0.1:0").unwrap(), UdpSocket::bind("127.0.0.1:0").unwrap());
            a.connect(b.local_addr().unwrap()).unwrap();
            b.connect(a.local_addr().unwrap()).unwrap();
            let echo = spawn(move || {
                let mut buf = [0; 64];
                for _ in 0..iters {
                    let n = b.recv(&mut buf).unwrap();
                    b.send(&buf[..n]).unwrap();
                }
            });
            let mut reply = [0; 64];
            let t = Instant::now();
            for _ in 0..iters {
                a.send(&[7; 64]).unwrap();
                a.recv(&mut reply).unwrap();
            }
            let elapsed = t.elapsed();
            echo.join();
            elapsed
        })
    });
}

fn connect_accept_close(c: &mut Criterion) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    c.bench_function("tcp/connect_accept_close", |b| {
        b.iter(|| {
            let client = TcpStream::connect(addr).unwrap();
            let (server, _) = listener.accept().unwrap();
            drop((client, server));
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = tcp_round_trip, std_threads_round_trip, udp_round_trip, connect_accept_close
}
criterion_main!(benches);
