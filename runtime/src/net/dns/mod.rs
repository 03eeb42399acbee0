//! Name resolution: the resolver [`lookup_host`](crate::net::lookup_host) uses, chosen as
//! gevent chooses its resolver, and gevent's helpers next to it.
//!
//! * [`Resolver::Thread`] (the default, gevent's `thread` resolver): `getaddrinfo` on a
//!   pool of [`resolver_threads`](crate::net::resolver_threads) threads. Everything the
//!   C library knows (nsswitch, mDNS, search domains), but at most that many look-ups at once.
//! * [`Resolver::Green`] (gevent's `ares`/`dnspython`): [`GreenResolver`], DNS queries over
//!   green sockets from `/etc/resolv.conf` and `/etc/hosts`: as many look-ups at once as
//!   there are greenlets, no threads. Search domains and nsswitch are not applied.
//!
//! Choose with [`set_resolver`] or the environment variable [`RESOLVER_ENV`]
//! (`VERDANT_RESOLVER=green`, like `GEVENT_RESOLVER`).
//!
//! ```
//! use verdant::net::dns::{self, Resolver};
//!
//! assert_eq!(dns::resolver(), Resolver::Thread);
//! let ip = dns::gethostbyname("localhost").unwrap();
//! assert!(ip.is_loopback());
//! let addrs = dns::getaddrinfo("localhost", 80).unwrap();
//! assert!(addrs.iter().all(|addr| addr.port() == 80));
//! ```

mod config;
mod green;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

pub use config::ResolverConfig;
pub use green::GreenResolver;

/// Which resolver [`lookup_host`](crate::net::lookup_host) and the helpers here use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolver {
    /// `getaddrinfo` on the resolver thread pool (the default).
    Thread,
    /// DNS over green sockets ([`GreenResolver`] with the system's settings).
    Green,
}

/// The environment variable read (once, at the first look-up) when [`set_resolver`] was
/// not called: `thread` or `green`.
pub const RESOLVER_ENV: &str = "VERDANT_RESOLVER";

/// 0: not chosen yet; 1: thread; 2: green.
static CHOICE: AtomicU8 = AtomicU8::new(0);

/// Chooses the resolver for the whole process.
pub fn set_resolver(resolver: Resolver) {
    CHOICE.store(encode(resolver), Ordering::SeqCst);
}

/// The resolver in use: [`set_resolver`]'s, else [`RESOLVER_ENV`]'s, else `Thread`.
pub fn resolver() -> Resolver {
    match CHOICE.load(Ordering::SeqCst) {
        1 => Resolver::Thread,
        2 => Resolver::Green,
        _ => {
            let chosen = from_env();
            let _ = CHOICE.compare_exchange(0, encode(chosen), Ordering::SeqCst, Ordering::SeqCst);
            resolver()
        }
    }
}

fn encode(resolver: Resolver) -> u8 {
    match resolver {
        Resolver::Thread => 1,
        Resolver::Green => 2,
    }
}

fn from_env() -> Resolver {
    match std::env::var(RESOLVER_ENV).as_deref() {
        Err(_) | Ok("thread") => Resolver::Thread,
        Ok("green") => Resolver::Green,
        Ok(other) => {
            verdant_hub::report::report(format!(
                "verdant: {RESOLVER_ENV}={other:?} is neither \"thread\" nor \"green\": using thread"
            ));
            Resolver::Thread
        }
    }
}

/// The green resolver with the system's settings, read once per process.
pub(crate) fn system_green() -> io::Result<&'static GreenResolver> {
    static SYSTEM: OnceLock<GreenResolver> = OnceLock::new();
    if let Some(resolver) = SYSTEM.get() {
        return Ok(resolver);
    }
    let resolver = GreenResolver::system()?;
    Ok(SYSTEM.get_or_init(|| resolver))
}

/// The first IPv4 address of `host` (gevent's `gethostbyname`), with the chosen resolver.
/// `NotFound` if it has none.
pub fn gethostbyname(host: &str) -> io::Result<IpAddr> {
    let addrs = getaddrinfo(host, 0)?;
    addrs.iter().map(SocketAddr::ip).find(IpAddr::is_ipv4).ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("{host} has no IPv4 address"))
    })
}

/// The socket addresses of `host` at `port` (`getaddrinfo`'s answer, as
/// [`lookup_host`](crate::net::lookup_host) gives it), with the chosen resolver.
pub fn getaddrinfo(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    crate::net::lookup_host(&format!("{host}:{port}"))
}
