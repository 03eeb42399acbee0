//! The green resolver: DNS queries over green sockets, so a look-up parks only its
//! greenlet and thousands can be under way on one thread (gevent's `ares` and `dnspython`
//! resolvers). Messages are built and parsed by hickory-proto.
//!
//! A look-up: an IP literal is itself; a name in the host table is answered from it;
//! otherwise an `A` and then an `AAAA` query go to the name servers in order, over UDP
//! from a fresh socket (a new random source port per query), each waiting up to the
//! timeout, for `attempts` rounds. A truncated UDP answer is asked again over TCP.

use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::config::{ResolverConfig, normalize};
use crate::net::{TcpStream, UdpSocket};

/// Resolves host names with DNS queries over green sockets. Cheap to clone; `Send`, since
/// it holds only its settings (each query's socket belongs to the calling hub).
///
/// ```no_run
/// use verdant::net::dns::GreenResolver;
///
/// let resolver = GreenResolver::system().unwrap(); // /etc/resolv.conf, /etc/hosts
/// let addrs = resolver.lookup_ip("example.com").unwrap();
/// assert!(!addrs.is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct GreenResolver {
    config: Arc<ResolverConfig>,
}

impl GreenResolver {
    /// A resolver with these settings.
    pub fn new(config: ResolverConfig) -> GreenResolver {
        GreenResolver { config: Arc::new(config) }
    }

    /// A resolver with the system's settings ([`ResolverConfig::system`]).
    pub fn system() -> io::Result<GreenResolver> {
        ResolverConfig::system().map(GreenResolver::new)
    }

    /// Its settings.
    pub fn config(&self) -> &ResolverConfig {
        &self.config
    }

    /// The addresses of `host` (IPv4 first), parking only the calling greenlet.
    /// `NotFound` if the name does not exist or has no address.
    pub fn lookup_ip(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        if let Some(ips) = self.config.hosts.get(&normalize(host)) {
            return Ok(ips.clone());
        }
        let name = fully_qualified(host)?;
        let mut ips = self.ask(&name, RecordType::A)?;
        ips.extend(self.ask(&name, RecordType::AAAA)?);
        if ips.is_empty() {
            return Err(not_found(host, "has no address"));
        }
        Ok(ips)
    }

    /// Resolves `"host:port"` (or `"[v6]:port"`) like [`lookup_host`](crate::net::lookup_host).
    pub fn lookup_host(&self, host_and_port: &str) -> io::Result<Vec<SocketAddr>> {
        let (host, port) = split_port(host_and_port)?;
        let ips = self.lookup_ip(host)?;
        Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }

    /// The addresses of type `kind` in the answer for `name`; empty if there are none, a
    /// `NotFound` error if the name does not exist.
    fn ask(&self, name: &Name, kind: RecordType) -> io::Result<Vec<IpAddr>> {
        let answer = self.exchange(name, kind)?;
        if answer.response_code() == ResponseCode::NXDomain {
            return Err(not_found(&name.to_string(), "does not exist"));
        }
        let ips = answer.answers().iter().filter_map(|record| match record.data() {
            RData::A(a) if kind == RecordType::A => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) if kind == RecordType::AAAA => Some(IpAddr::V6(aaaa.0)),
            _ => None, // the CNAME chain, or records of the other kind
        });
        Ok(ips.collect())
    }

    /// One question to the servers, in order, `attempts` rounds: the first usable answer.
    fn exchange(&self, name: &Name, kind: RecordType) -> io::Result<Message> {
        let id = RandomState::new().hash_one(name.to_string()) as u16;
        let mut request = Message::new();
        request
            .set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(name.clone(), kind));
        let request = request.to_vec().map_err(invalid_data)?;
        let timeout = self.config.timeout;
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no name server to ask");
        for _ in 0..self.config.attempts.max(1) {
            for &server in &self.config.nameservers {
                let answer = match udp_exchange(server, &request, id, timeout) {
                    Ok(answer) if answer.truncated() => tcp_exchange(server, &request, id, timeout),
                    other => other,
                };
                match answer {
                    Ok(answer) if usable(answer.response_code()) => return Ok(answer),
                    Ok(answer) => {
                        let code = answer.response_code();
                        last_error =
                            io::Error::other(format!("{server} answered {code} for {name}"));
                    }
                    Err(err) => last_error = err,
                }
            }
        }
        Err(last_error)
    }
}

/// An answer worth returning: success, or "no such name" (the next server would say so too).
fn usable(code: ResponseCode) -> bool {
    code == ResponseCode::NoError || code == ResponseCode::NXDomain
}

/// Sends `request` over UDP and waits for the answer that matches its id.
fn udp_exchange(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    timeout: Duration,
) -> io::Result<Message> {
    let local: SocketAddr =
        if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = UdpSocket::bind(local)?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send(request)?;
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.recv(&mut buf)?;
        match Message::from_vec(&buf[..n]) {
            Ok(answer) if answer.id() == id && answer.message_type() == MessageType::Response => {
                return Ok(answer);
            }
            _ => continue, // a stray or malformed datagram: keep waiting for ours
        }
    }
}

/// Sends `request` over TCP (two-byte length prefix) and reads the answer.
fn tcp_exchange(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    timeout: Duration,
) -> io::Result<Message> {
    let mut stream = TcpStream::connect_timeout(&server, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let length = u16::try_from(request.len()).map_err(invalid_data)?;
    stream.write_all(&[&length.to_be_bytes()[..], request].concat())?;
    let mut length = [0u8; 2];
    stream.read_exact(&mut length)?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut answer)?;
    let answer = Message::from_vec(&answer).map_err(invalid_data)?;
    if answer.id() != id {
        return Err(invalid_data(format!("{server} answered over TCP with another query's id")));
    }
    Ok(answer)
}

/// `host` as an absolute DNS name (search domains are not applied).
fn fully_qualified(host: &str) -> io::Result<Name> {
    let mut name = Name::from_utf8(host).map_err(|err| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?} is not a host name: {err}"))
    })?;
    name.set_fqdn(true);
    Ok(name)
}

/// Splits `"host:port"` / `"[v6]:port"`.
fn split_port(host_and_port: &str) -> io::Result<(&str, u16)> {
    let invalid = || {
        let message = format!("{host_and_port:?} is not \"host:port\"");
        io::Error::new(io::ErrorKind::InvalidInput, message)
    };
    let (host, port) = host_and_port.rsplit_once(':').ok_or_else(invalid)?;
    let port = port.parse::<u16>().map_err(|_| invalid())?;
    Ok((host.trim_start_matches('[').trim_end_matches(']'), port))
}

fn not_found(host: &str, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{host} {why}"))
}

fn invalid_data(err: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err.to_string())
}
