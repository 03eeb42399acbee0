//! What the green resolver asks and knows: name servers and options from
//! `/etc/resolv.conf`, names from `/etc/hosts`.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The green resolver's settings: whom to ask, how patiently, and the static host table.
///
/// ```
/// use verdant::net::dns::ResolverConfig;
///
/// let config = ResolverConfig::parse(
///     "nameserver 10.0.0.53\noptions timeout:2 attempts:3\n",
///     "127.0.0.1 localhost\n::1 localhost ip6-localhost\n",
/// );
/// assert_eq!(config.nameservers, ["10.0.0.53:53".parse().unwrap()]);
/// assert_eq!(config.attempts, 3);
/// assert_eq!(config.hosts["localhost"].len(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct ResolverConfig {
    /// The servers asked, in order (resolv.conf's `nameserver` lines; port 53).
    pub nameservers: Vec<SocketAddr>,
    /// How long one query waits for an answer (`options timeout:N`; default 5 s).
    pub timeout: Duration,
    /// How many rounds over the servers before giving up (`options attempts:N`; default 2).
    pub attempts: usize,
    /// Names answered without asking (`/etc/hosts`), lower-case, without a final dot.
    pub hosts: HashMap<String, Vec<IpAddr>>,
}

impl ResolverConfig {
    /// Asks only `nameservers`, with resolv.conf's defaults and an empty host table.
    pub fn with_nameservers(nameservers: Vec<SocketAddr>) -> ResolverConfig {
        ResolverConfig {
            nameservers,
            timeout: Duration::from_secs(5),
            attempts: 2,
            hosts: HashMap::new(),
        }
    }

    /// The system's: `/etc/resolv.conf` and `/etc/hosts` (a missing file counts as empty;
    /// no name server at all means `127.0.0.1`, as in glibc).
    pub fn system() -> io::Result<ResolverConfig> {
        let read = |path: &str| match std::fs::read_to_string(path) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            other => other,
        };
        Ok(ResolverConfig::parse(&read("/etc/resolv.conf")?, &read("/etc/hosts")?))
    }

    /// Parses the text of a resolv.conf and of a hosts file. Lines it does not understand
    /// are skipped, as the C library does.
    pub fn parse(resolv_conf: &str, hosts: &str) -> ResolverConfig {
        let mut config = ResolverConfig::with_nameservers(Vec::new());
        for words in lines(resolv_conf) {
            match words.as_slice() {
                ["nameserver", ip, ..] => {
                    // A scope suffix (fe80::1%eth0) is not supported: skipped.
                    if let Ok(ip) = ip.parse::<IpAddr>() {
                        config.nameservers.push(SocketAddr::new(ip, 53));
                    }
                }
                ["options", options @ ..] => config.set_options(options),
                _ => {}
            }
        }
        if config.nameservers.is_empty() {
            config.nameservers.push(SocketAddr::from(([127, 0, 0, 1], 53)));
        }
        for words in lines(hosts) {
            let Some((ip, names)) = words.split_first() else { continue };
            let Ok(ip) = ip.parse::<IpAddr>() else { continue };
            for name in names {
                config.hosts.entry(normalize(name)).or_default().push(ip);
            }
        }
        config
    }

    fn set_options(&mut self, options: &[&str]) {
        for option in options {
            let number = |prefix: &str| option.strip_prefix(prefix)?.parse::<u64>().ok();
            if let Some(seconds) = number("timeout:") {
                self.timeout = Duration::from_secs(seconds.clamp(1, 30));
            } else if let Some(attempts) = number("attempts:") {
                self.attempts = attempts.clamp(1, 5) as usize;
            }
        }
    }
}

/// The words of each line, comments (`#`, `;`) cut.
fn lines(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(|line| line.split(['#', ';']).next().unwrap_or(""))
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|words| !words.is_empty())
}

/// A host name as the table keys it: lower-case, no final dot.
pub(super) fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}
