//! HTTPS hello-world on verdant: rustls' `ServerConnection` in a `StreamOwned` over a green
//! `TcpStream`, unchanged, one greenlet per connection. The TLS handshake and every record
//! read or written park only the connection's own greenlet.
//!
//! It makes a development CA and a certificate for `localhost` and `127.0.0.1` with rcgen
//! at start-up, and writes the CA certificate where a client can trust it:
//!
//! ```text
//! cargo run --release --example https_hello -- 127.0.0.1:8443 --ca-out /tmp/verdant-ca.pem
//! cargo run --release --example https_get -- --ca /tmp/verdant-ca.pem https://127.0.0.1:8443/
//! curl --cacert /tmp/verdant-ca.pem https://localhost:8443/
//! ```
//!
//! The HTTP part is `http_hello`'s (`support/http.rs`: keep-alive, pipelining, refusals of
//! bad input), reading from and writing to the TLS stream instead of the socket.

#[path = "support/http.rs"]
mod http;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use verdant::net::{TcpStream, is_disconnect};
use verdant::server::StreamServer;

/// A certificate for the server, issued by a development CA made on the spot.
#[derive(Debug)]
pub struct DevCertificate {
    /// The CA's certificate, PEM: what clients trust (`https_get --ca`, `curl --cacert`).
    pub ca_pem: String,
    /// The CA's certificate, DER: for clients built in-process.
    pub ca_der: CertificateDer<'static>,
    /// The server's chain: its own certificate, then the CA's.
    pub chain: Vec<CertificateDer<'static>>,
    /// The server certificate's private key.
    pub key: PrivateKeyDer<'static>,
}

/// Makes a development CA and a server certificate for `names` (DNS names or IP
/// addresses) signed by it.
pub fn dev_certificate(names: &[&str]) -> Result<DevCertificate, rcgen::Error> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "verdant development CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(DnType::CommonName, "verdant https_hello");
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(DevCertificate {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().clone(),
        chain: vec![cert.der().clone(), ca_cert.der().clone()],
        key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    })
}

/// The rustls server configuration for `cert`: ring's algorithms, TLS 1.2 and 1.3, and
/// HTTP/1.1 offered by ALPN.
pub fn server_config(cert: &DevCertificate) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(cert.chain.clone(), cert.key.clone_key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The server, bound and configured, not started: a TLS session per connection, then
/// `http_hello`'s answers. A client that sends nothing for 10 s after connecting, or stays
/// silent for 60 s, is dropped (a handshake in progress counts as a read like any other).
pub fn server(addr: &str, config: Arc<ServerConfig>) -> io::Result<StreamServer> {
    let server = StreamServer::new(addr, move |stream, _: SocketAddr| {
        match serve(stream, config.clone()) {
            Err(err) if is_disconnect(&err) || err.kind() == io::ErrorKind::UnexpectedEof => {
                Ok(()) // the client hung up, with or without a TLS close_notify
            }
            done => done,
        }
    })?;
    Ok(server
        .with_first_byte_timeout(Duration::from_secs(10))
        .with_idle_timeout(Duration::from_secs(60)))
}

/// Serves HTTP requests over one TLS connection until the client closes or asks to close.
fn serve(stream: TcpStream, config: Arc<ServerConfig>) -> io::Result<()> {
    let session = ServerConnection::new(config).map_err(io::Error::other)?;
    // rustls drives the handshake inside the first read: plain blocking code.
    let mut tls = StreamOwned::new(session, stream);
    let mut input = Vec::with_capacity(4096);
    let mut output = Vec::with_capacity(4096);
    let mut chunk = [0; 4096];
    loop {
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            return Ok(()); // the client closed (after its close_notify)
        }
        input.extend_from_slice(&chunk[..n]);
        let next = http::answer(&input, &mut output);
        tls.write_all(&output)?;
        output.clear();
        match next {
            http::Next::Read { consumed } => drop(input.drain(..consumed)),
            http::Next::Close | http::Next::CloseAfterError => {
                tls.conn.send_close_notify();
                tls.flush()?;
                return Ok(());
            }
        }
    }
}

/// `[ADDR] [--ca-out PATH]`: serves until killed.
pub fn main() -> io::Result<()> {
    let mut addr = "127.0.0.1:8443".to_string();
    let mut ca_out = std::env::temp_dir().join("verdant-dev-ca.pem");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ca-out" => ca_out = args.next().unwrap_or_default().into(),
            _ if !arg.starts_with("--") => addr = arg,
            _ => {
                let usage =
                    format!("unknown option {arg}; usage: https_hello [ADDR] [--ca-out PATH]");
                return Err(io::Error::new(io::ErrorKind::InvalidInput, usage));
            }
        }
    }
    let cert = dev_certificate(&["localhost", "127.0.0.1", "::1"]).map_err(io::Error::other)?;
    std::fs::write(&ca_out, &cert.ca_pem)?;
    let server = server(&addr, server_config(&cert).map_err(io::Error::other)?)?;
    println!(
        "listening on https://{} (pid {}); the CA certificate is in {}",
        server.local_addr(),
        std::process::id(),
        ca_out.display()
    );
    server.serve_forever()
}
