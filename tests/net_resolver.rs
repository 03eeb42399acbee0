//! The resolver behind `lookup_host`: its thread pool's size, by default, by setting and by
//! environment variable.

use std::process::Command;

use verdant::net::{self, DEFAULT_RESOLVER_THREADS, RESOLVER_THREADS_ENV};

#[test]
fn the_resolver_pool_has_a_default_size_and_can_be_resized() {
    if std::env::var_os(RESOLVER_THREADS_ENV).is_some() {
        return; // this process is the child of the environment test below
    }
    assert_eq!(net::resolver_threads(), DEFAULT_RESOLVER_THREADS);
    assert_eq!(DEFAULT_RESOLVER_THREADS, 10, "gevent's thread pool size");
    net::set_resolver_threads(3).unwrap();
    assert_eq!(net::resolver_threads(), 3);
    let err = net::set_resolver_threads(0).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(net::resolver_threads(), 3, "a refused size changes nothing");
    // More look-ups than threads: the rest queue, all finish.
    let lookups: Vec<_> =
        (0..12).map(|_| verdant::spawn(|| net::lookup_host("localhost:80"))).collect();
    for lookup in lookups {
        let addrs = lookup.take().unwrap().unwrap();
        assert!(addrs.iter().all(|addr| addr.ip().is_loopback() && addr.port() == 80));
    }
}

/// Run in a child process with the environment variable set.
#[test]
fn resolver_threads_from_env_child() {
    let Ok(expected) = std::env::var("EXPECTED_RESOLVER_THREADS") else { return };
    assert_eq!(net::resolver_threads().to_string(), expected);
}

#[test]
fn the_environment_variable_sets_the_size() {
    for (value, expected) in [("25", 25), ("zero", DEFAULT_RESOLVER_THREADS)] {
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "resolver_threads_from_env_child", "--test-threads=1"])
            .env(RESOLVER_THREADS_ENV, value)
            .env("EXPECTED_RESOLVER_THREADS", expected.to_string())
            .output()
            .unwrap();
        assert!(output.status.success(), "{value}: {}", String::from_utf8_lossy(&output.stdout));
    }
}
