//! An HTTPS client on verdant: rustls' `ClientConnection` in a `StreamOwned` over a green
//! `TcpStream`, unchanged. Every URL given is fetched in a greenlet of its own, all at
//! once on one thread; the responses are printed in the order given.
//!
//! ```text
//! cargo run --release --example https_get -- https://www.rust-lang.org/     (the system's roots)
//! cargo run --release --example https_get -- --ca ca.pem https://localhost:8443/ (only ca.pem)
//! ```
//!
//! The system's trusted certificates are read with `rustls-native-certs` (on Linux, the
//! OpenSSL certificate store, `/etc/ssl/certs`; `SSL_CERT_FILE` and `SSL_CERT_DIR` are
//! honoured). `https_hello` writes a CA file this client can be given.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use verdant::net::TcpStream;

/// A response: its status code, its head (status line and header fields) and its body.
#[derive(Debug)]
pub struct Response {
    /// The status code (200, 404...).
    pub status: u16,
    /// The status line and header fields, without the blank line that ends them.
    pub head: String,
    /// Everything after the head, up to the close.
    pub body: Vec<u8>,
}

/// The client configuration: trust the certificates of the PEM file `ca_file`, or the
/// system's if `None`. ring's algorithms, TLS 1.2 and 1.3.
pub fn client_config(ca_file: Option<&Path>) -> io::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path).map_err(invalid)? {
                roots.add(cert.map_err(invalid)?).map_err(invalid)?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            // Unreadable files among the system's certificates are skipped, not fatal.
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(io::Error::other(format!(
                    "no trusted certificates found on this system ({:?}); give a CA file with --ca",
                    found.errors
                )));
            }
        }
    }
    Ok(with_roots(roots))
}

/// The client configuration trusting exactly `roots`.
pub fn with_roots(roots: RootCertStore) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Fetches `url` (`https://host[:port][/path]`) with an HTTP/1.0 GET, so that the body
/// simply runs until the server closes.
pub fn get(url: &str, config: Arc<ClientConfig>) -> io::Result<Response> {
    let (host, port, path) = parse_url(url)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']'); // an IPv6 address
    let name = ServerName::try_from(bare.to_string()).map_err(invalid)?;
    let session = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let socket = TcpStream::connect((bare, port))?;
    let mut tls = StreamOwned::new(session, socket);
    // The handshake happens inside this first write.
    let authority = if port == 443 { host.to_string() } else { format!("{host}:{port}") };
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: verdant-https_get\r\n\r\n"
    );
    tls.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    let truncated = match tls.read_to_end(&mut raw) {
        Ok(_) => false,
        // The server closed without a TLS close_notify: only fine if the body is whole.
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => true,
        Err(err) => return Err(err),
    };
    let response = parse_response(raw)?;
    if truncated && content_length(&response.head) != Some(response.body.len()) {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection without a TLS close_notify: the body may be cut",
        ));
    }
    Ok(response)
}

/// Splits `https://host[:port][/path]`; a bracketed IPv6 host keeps its brackets.
fn parse_url(url: &str) -> io::Result<(&str, u16, &str)> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| invalid(format!("{url}: only https:// URLs are supported")))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => {
            let port =
                authority[i + 1..].parse().map_err(|_| invalid(format!("{url}: bad port")))?;
            (&authority[..i], port)
        }
        _ => (authority, 443),
    };
    if host.is_empty() {
        return Err(invalid(format!("{url}: no host")));
    }
    Ok((host, port, path))
}

fn parse_response(raw: Vec<u8>) -> io::Result<Response> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("the response has no complete head"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid(format!("not an HTTP status line: {head:.80}")))?;
    Ok(Response { status, head, body: raw[end + 4..].to_vec() })
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
    })
}

fn invalid(err: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, err.to_string())
}

/// `[--ca FILE] URL...`
pub fn main() -> io::Result<()> {
    let mut ca = None;
    let mut urls = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ca" => ca = args.next(),
            _ => urls.push(arg),
        }
    }
    if urls.is_empty() {
        return Err(invalid("usage: https_get [--ca FILE] https://host[:port][/path]..."));
    }
    let config = client_config(ca.as_deref().map(Path::new))?;
    let fetches: Vec<_> = urls
        .iter()
        .map(|url| {
            let (url, config) = (url.clone(), config.clone());
            verdant::spawn(move || get(&url, config))
        })
        .collect();
    let mut failed = false;
    let mut stdout = io::stdout().lock();
    for (url, fetch) in urls.iter().zip(fetches) {
        match fetch.take().expect("a fetch does not panic") {
            Ok(response) => {
                let status_line = response.head.lines().next().unwrap_or_default();
                eprintln!("{url}: {status_line} ({} bytes)", response.body.len());
                stdout.write_all(&response.body)?;
            }
            Err(err) => {
                eprintln!("{url}: {err}");
                failed = true;
            }
        }
    }
    if failed {
        return Err(io::Error::other("some fetches failed"));
    }
    Ok(())
}
