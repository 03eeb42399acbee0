//! The green resolver against a local DNS server the test starts (UDP and TCP), and the
//! resolver setting behind `lookup_host`, and the `dns_mass_resolve` example's resolving.

#![allow(dead_code)] // the example's `main` is included but not called here

#[path = "../examples/dns_mass_resolve.rs"]
mod example;

use example::dns_server;

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use verdant::net::dns::{self, GreenResolver, Resolver, ResolverConfig};

fn resolver_for(server: &dns_server::DnsServer) -> GreenResolver {
    GreenResolver::new(ResolverConfig::with_nameservers(vec![server.addr]))
}

#[test]
fn names_resolve_over_udp() {
    let server = dns_server::start().unwrap();
    let resolver = resolver_for(&server);
    let ips = resolver.lookup_ip("host258.test").unwrap();
    assert_eq!(ips, [IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2))]);
    let addrs = resolver.lookup_host("HOST7.test.:8080").unwrap();
    assert_eq!(addrs, [SocketAddr::from(([10, 0, 0, 7], 8080))]);
    assert_eq!(server.udp_queries.load(Ordering::SeqCst), 4, "A and AAAA, twice");
    assert_eq!(server.tcp_queries.load(Ordering::SeqCst), 0);
}

#[test]
fn a_truncated_answer_is_asked_again_over_tcp() {
    let server = dns_server::start().unwrap();
    let ips = resolver_for(&server).lookup_ip("big.test").unwrap();
    assert_eq!(ips.len(), 200);
    assert_eq!(ips[199], IpAddr::V4(Ipv4Addr::new(10, 9, 0, 199)));
    assert_eq!(server.tcp_queries.load(Ordering::SeqCst), 2, "A and AAAA were truncated");
}

#[test]
fn missing_names_and_bad_input_are_clear_errors() {
    let server = dns_server::start().unwrap();
    let resolver = resolver_for(&server);
    let err = resolver.lookup_ip("missing.test").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("missing.test"), "{err}");
    let err = resolver.lookup_host("no-port.test").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let err = resolver.lookup_ip(&"x".repeat(300)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    // IP literals and the host table need no server.
    assert_eq!(resolver.lookup_ip("::1").unwrap(), [IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])]);
    let mut config = ResolverConfig::parse("nameserver 192.0.2.1\n", "10.1.2.3 Box.Local box\n");
    config.nameservers = vec![server.addr];
    let resolver = GreenResolver::new(config);
    assert_eq!(resolver.lookup_ip("box.local").unwrap(), [IpAddr::from([10, 1, 2, 3])]);
    assert_eq!(server.udp_queries.load(Ordering::SeqCst), 1, "only missing.test asked");
}

#[test]
fn a_silent_server_times_out_and_the_next_one_answers() {
    let server = dns_server::start().unwrap();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap(); // never answers
    let mut config =
        ResolverConfig::with_nameservers(vec![silent.local_addr().unwrap(), server.addr]);
    // Short, but each round gives the live server the whole timeout to answer.
    config.timeout = Duration::from_millis(250);
    config.attempts = 4;
    let ips = GreenResolver::new(config.clone()).lookup_ip("host1.test").unwrap();
    assert_eq!(ips, [IpAddr::from([10, 0, 0, 1])]);
    config.nameservers.truncate(1);
    let err = GreenResolver::new(config).lookup_ip("host1.test").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
}

#[test]
fn a_thousand_lookups_run_at_once_on_one_hub() {
    let server = dns_server::start().unwrap();
    // A datagram the server's socket had no room for is asked again after the timeout.
    let mut config = ResolverConfig::with_nameservers(vec![server.addr]);
    config.timeout = Duration::from_secs(2);
    config.attempts = 3;
    let resolver = GreenResolver::new(config);
    let lookups: Vec<_> = (0..1000u32)
        .map(|n| {
            let resolver = resolver.clone();
            verdant::spawn(move || resolver.lookup_ip(&format!("host{n}.test")))
        })
        .collect();
    for (n, lookup) in (0..1000u32).zip(lookups) {
        assert_eq!(lookup.take().unwrap().unwrap(), [IpAddr::V4(dns_server::address_of(n))]);
    }
    assert!(server.udp_queries.load(Ordering::SeqCst) >= 2000, "A and AAAA for each");
}

#[test]
fn the_resolver_setting_chooses_what_lookup_host_uses() {
    assert_eq!(dns::resolver(), Resolver::Thread, "the default");
    for choice in [Resolver::Green, Resolver::Thread] {
        dns::set_resolver(choice);
        assert_eq!(dns::resolver(), choice);
        // localhost is in /etc/hosts: no DNS server needed either way.
        let addrs = verdant::net::lookup_host("localhost:80").unwrap();
        assert!(addrs.iter().all(|addr| addr.ip().is_loopback() && addr.port() == 80), "{addrs:?}");
        assert!(dns::gethostbyname("localhost").unwrap().is_loopback());
        assert_eq!(
            dns::getaddrinfo("127.0.0.2", 9).unwrap(),
            [SocketAddr::from(([127, 0, 0, 2], 9))]
        );
    }
}

#[test]
fn the_mass_resolve_example_resolves_every_name_both_ways() {
    let server = dns_server::start_with_delay(Duration::from_millis(1)).unwrap();
    let resolver = resolver_for(&server);
    assert_eq!(example::resolve_green(&resolver, 300, 50), 300);
    assert_eq!(example::resolve_threads(&resolver, 300, 4), 300);
}
