"""gevent's side of examples/dns_mass_resolve.rs: the same 10,000 names, against the same
local DNS server (the example run as `serve`), with gevent's resolvers.

    cargo build --release --example dns_mass_resolve
    pip install gevent dnspython
    python3 benches/gevent_dns_mass_resolve.py [NAMES] [CONCURRENCY] [DELAY_MS]

Prints lookups per second for: gevent's `ares` resolver (c-ares, green) from a Pool of
CONCURRENCY greenlets; dnspython over gevent's patched sockets, same pool; and dnspython
blocking in gevent's thread pool of 10 (the shape of gevent's default `thread` resolver,
whose getaddrinfo cannot be pointed at a local server). Each look-up asks A and AAAA, as
verdant's does.
"""

import subprocess
import sys
import time

EXAMPLE = "target/release/examples/dns_mass_resolve"


def ares(addr, names, concurrency):
    import socket
    import gevent.pool
    from gevent.resolver.ares import Resolver

    host, port = addr
    resolver = Resolver(servers=[host], udp_port=port, tcp_port=port)

    def lookup(n):
        return resolver.getaddrinfo("host%d.test" % n, 0, socket.AF_UNSPEC, socket.SOCK_STREAM)

    return run(lambda: gevent.pool.Pool(concurrency).map(lookup, range(names)))


def dnspython_lookup(addr):
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [addr[0]]
    resolver.port = addr[1]

    def lookup(n):
        name = "host%d.test." % n
        found = [r.address for r in resolver.resolve(name, "A")]
        try:
            found += [r.address for r in resolver.resolve(name, "AAAA")]
        except dns.resolver.NoAnswer:
            pass
        return found

    return lookup


def green_dnspython(addr, names, concurrency):
    from gevent import monkey

    monkey.patch_all()
    import gevent.pool

    lookup = dnspython_lookup(addr)
    return run(lambda: gevent.pool.Pool(concurrency).map(lookup, range(names)))


def threads_dnspython(addr, names, _concurrency):
    from gevent.threadpool import ThreadPool

    lookup = dnspython_lookup(addr)
    return run(lambda: ThreadPool(10).map(lookup, range(names)))


def run(work):
    started = time.perf_counter()
    results = work()
    elapsed = time.perf_counter() - started
    assert all(results), "every name resolves"
    return len(results) / elapsed


MODES = {"ares": ares, "green-dnspython": green_dnspython, "threads-dnspython": threads_dnspython}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--mode":  # one mode per process (patching)
        mode, host, port, names, concurrency = sys.argv[2:7]
        rate = MODES[mode]((host, int(port)), int(names), int(concurrency))
        print("RESULT gevent_%s %.0f lookups/s" % (mode, rate), flush=True)
        return
    names, concurrency, delay = (sys.argv[1:] + ["10000", "200", "1"][len(sys.argv) - 1:])[:3]
    server = subprocess.Popen([EXAMPLE, "serve", delay], stdout=subprocess.PIPE, text=True)
    try:
        addr = server.stdout.readline().split()[2]
        host, port = addr.rsplit(":", 1)
        print("gevent against the local DNS server at %s, answering %s ms late" % (addr, delay))
        for mode in MODES:
            args = [sys.executable, __file__, "--mode", mode, host, port, names, concurrency]
            subprocess.run(args, check=True)
    finally:
        server.kill()


if __name__ == "__main__":
    main()
