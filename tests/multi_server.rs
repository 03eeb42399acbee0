//! `MultiServer` and `SO_REUSEPORT`: one server per hub on one address; every client
//! served and counted once in the added-up stats; one stop, from any thread or from a
//! handler, reaches every hub and waits for the handlers in flight.

use std::io::{self, Read, Write};
use std::net::{self, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use verdant::Hubs;
use verdant::net::{TcpListener, TcpStream};
use verdant::server::MultiServer;

/// Replies with its hub's index to a first byte `h`, then reads until EOF and counts
/// itself in `finished`. A connection that closes at once (a probe) is not counted.
fn greeter(finished: Arc<AtomicUsize>) -> impl Fn(TcpStream, SocketAddr) -> io::Result<()> {
    move |mut stream, _peer| {
        let mut byte = [0];
        if stream.read(&mut byte)? == 0 {
            return Ok(());
        }
        stream.write_all(&[verdant::hubs::index().unwrap() as u8])?;
        while stream.read(&mut byte)? > 0 {}
        finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A blocking client that has been greeted: its handler is in flight until it is dropped.
fn greeted_client(addr: SocketAddr) -> (net::TcpStream, usize) {
    let mut client = net::TcpStream::connect(addr).unwrap();
    client.write_all(b"h").unwrap();
    let mut hub = [0];
    client.read_exact(&mut hub).unwrap();
    (client, hub[0] as usize)
}

#[test]
fn many_clients_are_all_served_and_counted_once_in_the_added_up_stats() {
    let finished = Arc::new(AtomicUsize::new(0));
    let for_hubs = finished.clone();
    let server =
        MultiServer::start("127.0.0.1:0", Hubs::new(2), move |_| greeter(for_hubs.clone()))
            .unwrap();
    assert_eq!(server.hubs(), 2);
    const CLIENTS: usize = 40;
    let addr = server.local_addr();
    // Client greenlets on this thread's hub, all connected at once.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            verdant::spawn(move || {
                let mut client = TcpStream::connect(addr).unwrap();
                client.write_all(b"h").unwrap();
                let mut hub = [0];
                client.read_exact(&mut hub).unwrap();
                hub[0] as usize
            })
        })
        .collect();
    let mut per_hub = [0usize; 2];
    for client in &clients {
        per_hub[client.get().unwrap()] += 1;
    }
    // The kernel hashes each client's port: 40 clients all on one hub has odds of 2^-39.
    assert!(per_hub.iter().all(|&n| n > 0), "both hubs served: {per_hub:?}");
    assert_eq!(server.stats().accepted, CLIENTS as u64);
    let by_hub: Vec<u64> = server.hub_stats().iter().map(|s| s.accepted).collect();
    assert_eq!(by_hub, per_hub.map(|n| n as u64));
    server.stop(Some(Duration::from_secs(600))); // the clients are gone (their greenlets ended): handlers see EOF
    assert_eq!(finished.load(Ordering::SeqCst), CLIENTS);
    let stats = server.stats();
    assert_eq!((stats.accepted, stats.active, stats.handler_errors), (CLIENTS as u64, 0, 0));
    server.wait().unwrap();
}

#[test]
fn stop_from_another_thread_closes_every_listener_and_waits_for_the_handlers_in_flight() {
    let finished = Arc::new(AtomicUsize::new(0));
    let for_hubs = finished.clone();
    let server =
        MultiServer::start("127.0.0.1:0", Hubs::new(2), move |_| greeter(for_hubs.clone()))
            .unwrap();
    let addr = server.local_addr();
    const CLIENTS: usize = 16;
    let clients: Vec<_> = (0..CLIENTS).map(|_| greeted_client(addr)).collect();
    assert_eq!(server.stats().active, CLIENTS);

    let stopping = server.clone();
    let finished_at_stop = finished.clone();
    let stopper = thread::spawn(move || {
        stopping.stop(Some(Duration::from_secs(600))); // no handler is killed meanwhile
        finished_at_stop.load(Ordering::SeqCst)
    });
    // Every hub closes its listener: connecting is refused once all are closed.
    loop {
        match net::TcpStream::connect(addr) {
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => break,
            // A listener closed with this connection in its queue: the kernel resets it.
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(error) => panic!("connect: {error} ({:?})", error.kind()),
            Ok(probe) => drop(probe), // a hub not yet stopped: its handler ends at once
        }
        thread::yield_now();
    }
    // The handlers cannot end before their clients close: the stop is still waiting.
    assert!(!server.is_stopped());
    assert_eq!(finished.load(Ordering::SeqCst), 0);
    drop(clients);
    assert_eq!(stopper.join().unwrap(), CLIENTS, "stop returned after every handler ended");
    assert!(server.is_stopped());
    assert_eq!(server.stats().active, 0);
    server.wait().unwrap();
}

#[test]
fn stop_from_a_handler_on_one_hub_stops_every_hub() {
    let me: Arc<OnceLock<MultiServer>> = Arc::new(OnceLock::new());
    let for_hubs = me.clone();
    let server = MultiServer::start("127.0.0.1:0", Hubs::new(2), move |_| {
        let me = for_hubs.clone();
        move |mut stream: TcpStream, _peer| -> io::Result<()> {
            let mut byte = [0];
            if stream.read(&mut byte)? == 1 && byte[0] == b's' {
                me.get().unwrap().stop(None); // on its own hub: starts the stop, returns
                stream.write_all(b"k")?;
            }
            Ok(())
        }
    })
    .unwrap();
    me.set(server.clone()).unwrap();
    let mut client = net::TcpStream::connect(server.local_addr()).unwrap();
    client.write_all(b"s").unwrap();
    let mut reply = [0];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"k", "stop returned in the handler");
    server.wait().unwrap(); // every hub ends
    assert!(server.is_stopped());
    assert!(net::TcpStream::connect(server.local_addr()).is_err());
}

#[test]
fn an_address_in_use_without_reuse_port_is_a_clear_error() {
    let taken = net::TcpListener::bind("127.0.0.1:0").unwrap();
    let error =
        MultiServer::start(taken.local_addr().unwrap(), Hubs::new(2), |_| |_, _| ()).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
}

#[test]
fn a_hub_whose_handler_factory_panics_fails_the_start_and_the_others_stop() {
    let error = MultiServer::start("127.0.0.1:0", Hubs::new(2), |hub| {
        assert_ne!(hub, 1, "no handler for hub 1");
        |_: TcpStream, _: SocketAddr| ()
    })
    .unwrap_err();
    assert!(error.to_string().contains("hub 1"), "{error}");
}

#[test]
fn reuse_port_listeners_share_a_port_and_linger_zero_resets() {
    let first = TcpListener::bind_reuse_port("127.0.0.1:0").unwrap();
    let addr = first.local_addr().unwrap();
    let second = TcpListener::bind_reuse_port(addr).unwrap();
    assert_eq!(second.local_addr().unwrap(), addr);
    drop(second);
    let mut client = TcpStream::connect(addr).unwrap();
    let (server_side, _) = first.accept().unwrap();
    server_side.set_linger(Some(Duration::ZERO)).unwrap();
    assert_eq!(server_side.linger().unwrap(), Some(Duration::ZERO));
    drop(server_side); // closes with a reset, not a FIN
    let error = client.read(&mut [0; 8]).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
}
