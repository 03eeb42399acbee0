"""The process-pool benches of benches/processpool.rs, on Python's multiprocessing.Pool.

    python3 benches/multiprocessing_pool.py

Prints the median of several runs for: map over 100,000 items with chunksize 1 and 1,000,
and the round trip of one apply, on 2 worker processes (the same work as the Rust bench).
"""

import multiprocessing
import statistics
import time


def double(x):
    return x * 2


def median_seconds(work, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    with multiprocessing.Pool(2) as pool:
        pool.map(double, range(1000))  # warm up
        for chunksize in (1, 1000):
            seconds = median_seconds(lambda: pool.map(double, range(100_000), chunksize), 5)
            print(f"multiprocessing map_100k_items_chunksize_{chunksize}: {seconds * 1e3:.1f} ms")
        rounds = 2000
        seconds = median_seconds(lambda: [pool.apply(double, (21,)) for _ in range(rounds)], 5)
        print(f"multiprocessing apply_round_trip: {seconds / rounds * 1e6:.1f} us")


if __name__ == "__main__":
    main()
