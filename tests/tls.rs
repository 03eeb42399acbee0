//! TLS over green sockets: rustls' `StreamOwned` over verdant's `TcpStream`, unchanged.
//! The `https_get` client against the `https_hello` server (trusting the development CA
//! it makes), and 100 TLS handshakes in flight at once on one hub.

#![allow(dead_code)] // the examples' `main`s are included but not called here

#[path = "../examples/https_get.rs"]
mod https_get;
#[path = "../examples/https_hello.rs"]
mod https_hello;

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::rc::Rc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, RootCertStore, ServerConnection, StreamOwned};
use verdant::net::TcpStream;
use verdant::server::StreamServer;
use verdant::sync::Event;
use verdant::{spawn, with_timeout};

/// Generous: only a lost wake-up or a stuck handshake would take this long.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// A file in the temporary directory, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn with(name: &str, contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("verdant-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn https_hello_server() -> (StreamServer, https_hello::DevCertificate) {
    let cert = https_hello::dev_certificate(&["localhost", "127.0.0.1"]).unwrap();
    let config = https_hello::server_config(&cert).unwrap();
    let server = https_hello::server("127.0.0.1:0", config).unwrap();
    server.start().unwrap();
    (server, cert)
}

#[test]
fn https_get_fetches_from_https_hello_trusting_its_ca_file() {
    let (server, cert) = https_hello_server();
    let ca_file = TempFile::with("ca.pem", &cert.ca_pem);
    let config = https_get::client_config(Some(&ca_file.0)).unwrap();
    let port = server.local_addr().port();
    with_timeout(HANG_GUARD, || {
        // By IP address and by name (resolved by verdant's lookup_host).
        for url in [format!("https://127.0.0.1:{port}/"), format!("https://localhost:{port}/x")] {
            let response = https_get::get(&url, config.clone()).unwrap();
            assert_eq!(response.status, 200, "{url}: {}", response.head);
            assert_eq!(response.body, b"Hello, world!");
        }
    })
    .unwrap();
    server.stop(None);
    assert_eq!(server.stats().handler_errors, 0);
}

#[test]
fn a_client_that_does_not_trust_the_ca_refuses_the_server() {
    let (server, _cert) = https_hello_server();
    let other_ca = https_hello::dev_certificate(&["localhost"]).unwrap(); // not the server's
    let mut roots = RootCertStore::empty();
    roots.add(other_ca.ca_der).unwrap();
    let url = format!("https://127.0.0.1:{}/", server.local_addr().port());
    let err = https_get::get(&url, https_get::with_roots(roots)).unwrap_err();
    assert!(err.to_string().contains("invalid peer certificate"), "{err}");
    server.stop(None);
}

/// What the server of the handshake test counts.
#[derive(Default)]
struct Handshakes {
    /// ClientHellos received.
    hellos: Cell<usize>,
    /// Handshakes started (a ClientHello read) and not finished.
    in_progress: Cell<usize>,
    /// The most in progress at once.
    most: Cell<usize>,
    /// Handshakes finished.
    finished: Cell<usize>,
}

#[test]
fn a_hundred_tls_handshakes_run_at_once_on_one_hub() {
    const CLIENTS: usize = 100;
    let cert = https_hello::dev_certificate(&["localhost"]).unwrap();
    let server_config = https_hello::server_config(&cert).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert.ca_der.clone()).unwrap();
    let client_config = https_get::with_roots(roots);

    let counts = Rc::new(Handshakes::default());
    let all_hellos = Rc::new(Event::new());
    let (c, gate) = (counts.clone(), all_hellos.clone());
    // An echo server that holds every handshake after its ClientHello until all 100 have
    // arrived: only a server that runs them concurrently can get past that point.
    let server = StreamServer::new("127.0.0.1:0", move |mut socket: TcpStream, _| {
        let mut session = ServerConnection::new(server_config.clone()).map_err(io::Error::other)?;
        while !session.wants_write() {
            if session.read_tls(&mut socket)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            session.process_new_packets().map_err(io::Error::other)?;
        }
        c.hellos.set(c.hellos.get() + 1);
        c.in_progress.set(c.in_progress.get() + 1);
        c.most.set(c.most.get().max(c.in_progress.get()));
        if c.hellos.get() == CLIENTS {
            gate.set();
        }
        gate.wait();
        while session.is_handshaking() {
            session.complete_io(&mut socket)?;
        }
        c.in_progress.set(c.in_progress.get() - 1);
        c.finished.set(c.finished.get() + 1);
        let mut tls = BufReader::new(StreamOwned::new(session, socket));
        let mut line = String::new();
        tls.read_line(&mut line)?;
        let tls = tls.get_mut();
        tls.write_all(line.as_bytes())?;
        tls.conn.send_close_notify();
        tls.flush()
    })
    .unwrap();
    server.start().unwrap();
    let addr = server.local_addr();

    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let config = client_config.clone();
            spawn(move || -> io::Result<String> {
                let name = ServerName::try_from("localhost").unwrap();
                let session = ClientConnection::new(config, name).map_err(io::Error::other)?;
                let mut tls = StreamOwned::new(session, TcpStream::connect(addr)?);
                tls.write_all(format!("client {i}\n").as_bytes())?; // handshake, then data
                let mut reply = String::new();
                tls.read_to_string(&mut reply)?; // until the server's close_notify
                Ok(reply)
            })
        })
        .collect();
    with_timeout(HANG_GUARD, || {
        for (i, client) in clients.iter().enumerate() {
            assert_eq!(client.take().unwrap().unwrap(), format!("client {i}\n"));
        }
    })
    .expect("the handshakes did not all complete");
    server.stop(None);
    assert_eq!(counts.hellos.get(), CLIENTS);
    assert_eq!(counts.most.get(), CLIENTS, "all handshakes were in flight at once");
    assert_eq!(counts.finished.get(), CLIENTS);
    assert_eq!(server.stats().handler_errors, 0);
}
