//! One conformance suite run over every greenlet pool type and size, as gevent's own
//! `test__pool.py` does (TestPool, TestPool2, TestPool3, TestPool10, TestPoolUnlimit).
//!
//! Each `suite!` line instantiates every test for one pool type and size; the historic
//! failures are named: empty input, first item panics, nested spawn into a full pool, kill
//! during map, imap over a blocking input.

use verdant_testutil as util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use util::panic_message_of;
use verdant_hub::{GreenletError, sleep, yield_now};
use verdant_pool::{GreenPool, Group, MapError, Pool};
use verdant_sync::Queue;

fn sqr(x: u64) -> u64 {
    yield_now();
    x * x
}

fn squares(n: u64) -> Vec<u64> {
    (0..n).map(|x| x * x).collect()
}

/// An input iterator that yields 0, 1, 2 and then blocks for a while before ending
/// (gevent issue #311).
fn final_sleep() -> impl Iterator<Item = u64> {
    (0..4u64).filter(|&i| {
        if i == 3 {
            sleep(Duration::from_millis(20)); // blocks before the input ends
        }
        i < 3
    })
}

macro_rules! suite {
    ($name:ident, $make:expr, $size:expr) => {
        mod $name {
            use super::*;

            #[allow(unused_imports)]
            use verdant_pool::*;

            fn size() -> Option<usize> {
                $size
            }

            #[test]
            fn apply_returns_the_value() {
                let pool = $make;
                assert_eq!(pool.apply(|| sqr(5)), 25);
            }

            #[test]
            fn apply_reraises_a_panic() {
                let pool = $make;
                let msg = panic_message_of(|| {
                    pool.apply(|| -> u8 { panic!("raiser") });
                });
                assert_eq!(msg, "raiser");
                assert_eq!(pool.apply(|| 1), 1, "the pool still serves");
            }

            #[test]
            fn nested_apply_into_a_full_pool_runs_inline() {
                let pool = $make;
                let inner = pool.clone();
                assert_eq!(pool.apply(move || inner.apply(|| 5 + 1)), 6);
            }

            #[test]
            fn map_keeps_input_order() {
                let pool = $make;
                assert_eq!(pool.map(sqr, 0..10), Ok(squares(10)));
                assert_eq!(pool.map(sqr, 0..100), Ok(squares(100)));
            }

            #[test]
            fn apply_async_never_blocks_and_gets_the_value() {
                let pool = $make;
                // Had apply_async blocked (waiting for room in a full pool), the hub would
                // have run the tasks already submitted meanwhile.
                let ran = Rc::new(Cell::new(0usize));
                let tasks: Vec<_> = (0..20u64)
                    .map(|x| {
                        let ran = ran.clone();
                        pool.apply_async(move || {
                            ran.set(ran.get() + 1);
                            sqr(x)
                        })
                    })
                    .collect();
                assert_eq!(ran.get(), 0, "apply_async returned without letting anything run");
                let values: Vec<u64> = tasks.iter().map(|g| g.get().unwrap()).collect();
                assert_eq!(values, squares(20));
                assert_eq!(ran.get(), 20);
            }

            #[test]
            fn apply_async_callback_gets_the_value() {
                let pool = $make;
                let seen = Rc::new(Cell::new(0));
                let s = seen.clone();
                let g = pool.apply_async_with_callback(|| sqr(7), move |v| s.set(*v));
                assert_eq!(g.get(), Ok(49));
                assert_eq!(seen.get(), 49);
                let seen = Rc::new(Cell::new(0));
                let s = seen.clone();
                assert_eq!(pool.apply_cb(|| 3, move |v| s.set(*v)), 3);
                assert_eq!(seen.get(), 3);
            }

            #[test]
            fn apply_async_get_can_time_out() {
                let pool = $make;
                let g = pool.apply_async(|| sleep(Duration::from_millis(200)));
                assert!(!g.join_timeout(Duration::from_millis(5)));
                g.kill();
            }

            #[test]
            fn imap_small_and_large() {
                let pool = $make;
                assert_eq!(
                    pool.imap(sqr, 0..10).map(Result::unwrap).collect::<Vec<_>>(),
                    squares(10)
                );
                let mut it = pool.imap(sqr, 0..1000);
                for i in 0..1000 {
                    assert_eq!(it.next(), Some(Ok(i * i)));
                }
                assert_eq!(it.next(), None);
            }

            #[test]
            fn imap_with_random_sleeps_keeps_order() {
                let pool = $make;
                let jittery = |x: u64| {
                    sleep(Duration::from_micros((x * 7919) % 3000));
                    x * x
                };
                assert_eq!(
                    pool.imap(jittery, 0..10).map(Result::unwrap).collect::<Vec<_>>(),
                    squares(10)
                );
            }

            #[test]
            fn imap_unordered_yields_every_result() {
                let pool = $make;
                let mut got: Vec<u64> =
                    pool.imap_unordered(sqr, 0..1000).map(Result::unwrap).collect();
                got.sort();
                assert_eq!(got, squares(1000));
            }

            #[test]
            fn empty_input_returns_at_once() {
                let pool = $make;
                assert_eq!(pool.imap(sqr, Vec::new()).count(), 0);
                assert_eq!(pool.imap_unordered(sqr, Vec::new()).count(), 0);
                assert_eq!(pool.map(sqr, Vec::new()), Ok(vec![]));
            }

            #[test]
            fn imap_unordered_is_in_completion_order() {
                let pool = $make;
                // Task x takes x turns of the hub (yield_now: FIFO), not x milliseconds: the
                // completion order does not depend on how long anything takes. With two
                // places, 2 starts when 1 is done and still ends long before 100.
                let nap = |x: u64| {
                    for _ in 0..x {
                        yield_now();
                    }
                    x
                };
                let got: Vec<u64> =
                    pool.imap_unordered(nap, [100, 1, 2]).map(Result::unwrap).collect();
                if size() == Some(1) {
                    assert_eq!(got, [100, 1, 2]);
                } else {
                    assert_eq!(got, [1, 2, 100]);
                }
            }

            #[test]
            fn imap_over_a_blocking_input() {
                // gevent #423: the input is a queue that blocks, then ends later.
                let pool = $make;
                let q = Queue::new();
                q.put(123u64).unwrap();
                let closer = q.clone();
                verdant_hub::spawn_later(Duration::from_millis(20), move || closer.close());
                let input = q.clone();
                let got: Vec<u64> = pool
                    .imap(|x| x, std::iter::from_fn(move || input.get().ok()))
                    .map(Result::unwrap)
                    .collect();
                assert_eq!(got, [123]);
                let q = Queue::new();
                q.put(1234u64).unwrap();
                let closer = q.clone();
                verdant_hub::spawn_later(Duration::from_millis(20), move || closer.close());
                let got: Vec<u64> = pool
                    .imap_unordered(|x| x, std::iter::from_fn(move || q.get().ok()))
                    .map(Result::unwrap)
                    .collect();
                assert_eq!(got, [1234]);
            }

            #[test]
            fn imap_whose_input_sleeps_at_the_end() {
                // gevent #311.
                let pool = $make;
                assert_eq!(
                    pool.imap(sqr, final_sleep()).map(Result::unwrap).collect::<Vec<_>>(),
                    [0, 1, 4]
                );
                assert_eq!(
                    pool.imap_unordered(sqr, final_sleep()).map(Result::unwrap).collect::<Vec<_>>(),
                    [0, 1, 4]
                );
            }

            #[test]
            fn imap_maxsize_bounds_work_ahead_of_a_slow_reader() {
                // gevent #638: with maxsize 1, no more than two tasks run ahead of the reader.
                let pool = $make;
                let started = Rc::new(Cell::new(0usize));
                for unordered in [false, true] {
                    started.set(0);
                    let s = started.clone();
                    let f = move |i: usize| {
                        s.set(s.get() + 1);
                        i
                    };
                    let it: Box<dyn Iterator<Item = _>> = if unordered {
                        Box::new(pool.imap_unordered_maxsize(f, 0..100, 1))
                    } else {
                        Box::new(pool.imap_maxsize(f, 0..100, 1))
                    };
                    let mut got = Vec::new();
                    for (i, item) in it.enumerate() {
                        assert!(started.get() <= i + 2, "{} started by item {i}", started.get());
                        got.push(item.unwrap());
                        sleep(Duration::from_micros(200));
                    }
                    got.sort();
                    assert_eq!(got, (0..100).collect::<Vec<_>>());
                }
            }

            #[test]
            fn a_failing_item_surfaces_at_its_position_and_iteration_goes_on() {
                let pool = $make;
                let divide = |x: u64| {
                    assert!(x != 0, "divide by zero");
                    100 / x
                };
                let mut it = pool.imap(divide, [1, 0, 2]);
                assert_eq!(it.next(), Some(Ok(100)));
                assert_eq!(
                    it.next(),
                    Some(Err(MapError::Task {
                        index: 1,
                        error: GreenletError::Panicked("divide by zero".into())
                    }))
                );
                assert_eq!(it.next(), Some(Ok(50)));
                assert_eq!(it.next(), None);
                let err = pool.map(divide, [1, 0, 2]).unwrap_err();
                assert_eq!(err.index(), 1);
                assert!(err.to_string().contains("divide by zero"), "{err}");
            }

            #[test]
            fn first_item_panics() {
                let pool = $make;
                let f = |x: u64| -> u64 {
                    assert!(x != 0, "first");
                    x
                };
                let got: Vec<_> = pool.imap(f, 0..3).collect();
                assert!(matches!(&got[0], Err(MapError::Task { index: 0, .. })));
                assert_eq!(got[1..], [Ok(1), Ok(2)]);
            }

            #[test]
            fn an_input_iterator_that_panics_ends_the_map_with_its_error() {
                let pool = $make;
                let error_iter = || {
                    (1..4u64).map(|x| {
                        assert!(x < 3, "bad input");
                        x
                    })
                };
                let err = pool.map(|x| x, error_iter()).unwrap_err();
                assert_eq!(err, MapError::Input { index: 2, message: "bad input".into() });
                let mut got: Vec<_> = pool.imap_unordered(|x| x, error_iter()).collect();
                assert_eq!(
                    got.pop(),
                    Some(Err(MapError::Input { index: 2, message: "bad input".into() }))
                );
                got.sort_by_key(|r| r.clone().unwrap_or(0));
                assert_eq!(got, [Ok(1), Ok(2)]);
            }

            #[test]
            fn kill_during_map_stops_spawning_new_tasks() {
                let pool = $make;
                let started = Rc::new(Cell::new(0usize));
                let n = size().unwrap_or(10) * 2;
                // As many tasks as the pool admits start, then wait for a kill: none of them
                // can end by itself, so a `true` from kill means it interrupted them.
                let all_in = verdant_sync::Event::new();
                let (s, a) = (started.clone(), all_in.clone());
                let result = pool.map_async(
                    move |_: usize| {
                        s.set(s.get() + 1);
                        if s.get() == size().unwrap_or(n) {
                            a.set();
                        }
                        sleep(Duration::from_secs(60));
                    },
                    0..n,
                );
                all_in.wait();
                assert!(pool.kill_timeout(Duration::from_secs(30)));
                let started_at_kill = started.get();
                result.join();
                sleep(Duration::from_millis(5));
                assert_eq!(started.get(), started_at_kill, "no task started after the kill");
                if size().is_some() {
                    assert!(started_at_kill < n, "the map was cut short: {started_at_kill} of {n}");
                }
                assert!(pool.is_empty());
                assert!(matches!(
                    result.get().unwrap(),
                    Err(MapError::Task { error: GreenletError::Killed, .. })
                ));
            }

            #[test]
            fn never_more_members_than_the_size() {
                let pool = $make;
                let running = Rc::new(Cell::new(0usize));
                let most = Rc::new(Cell::new(0usize));
                let (r, m) = (running.clone(), most.clone());
                let _ = pool.map(
                    move |_: u32| {
                        r.set(r.get() + 1);
                        m.set(m.get().max(r.get()));
                        sleep(Duration::from_millis(1));
                        r.set(r.get() - 1);
                    },
                    0..30,
                );
                assert_eq!(most.get(), size().unwrap_or(30).min(30));
            }

            #[test]
            fn members_leave_by_themselves_and_join_waits_for_empty() {
                let pool = $make;
                let g = pool.spawn(|| sleep(Duration::from_millis(5)));
                assert!(pool.contains(&g));
                assert_eq!(pool.len(), 1);
                assert!(!pool.join_timeout(Duration::from_millis(1)));
                pool.join();
                assert!(pool.is_empty() && !pool.contains(&g));
            }
        }
    };
}

suite!(pool_1, Pool::new(1), Some(1));
suite!(pool_2, Pool::new(2), Some(2));
suite!(pool_3, Pool::new(3), Some(3));
suite!(pool_10, Pool::new(10), Some(10));
suite!(pool_unbounded, Pool::unlimited(), None);
suite!(group, Group::new(), None);
suite!(greenpool_1, GreenPool::new(1), Some(1));
suite!(greenpool_2, GreenPool::new(2), Some(2));
suite!(greenpool_3, GreenPool::new(3), Some(3));
suite!(greenpool_10, GreenPool::new(10), Some(10));

/// Size 0 never admits anyone (gevent's TestPool0).
mod pool_0 {
    use super::*;

    #[test]
    fn nothing_is_ever_admitted() {
        let pool = Pool::new(0);
        assert_eq!(pool.free_count(), 0);
        assert!(pool.is_full());
        assert_eq!(pool.wait_available_timeout(Duration::from_millis(5)), 0);
        let g = verdant_hub::Greenlet::new(|| ());
        assert_eq!(pool.start_timeout(&g, Duration::from_millis(5)), Err(verdant_pool::PoolFull));
        assert_eq!(pool.try_add(&g), Err(verdant_pool::PoolFull));
        assert!(!g.started() && pool.is_empty());
    }

    #[test]
    fn apply_async_returns_at_once_and_never_runs() {
        let pool = Pool::new(0);
        let g = pool.apply_async(|| 1);
        assert!(!g.join_timeout(Duration::from_millis(5)));
        g.kill();
    }

    #[test]
    fn empty_input_still_returns_at_once() {
        let pool = Pool::new(0);
        assert_eq!(pool.map(sqr, Vec::new()), Ok(vec![]));
        assert_eq!(pool.imap_unordered(sqr, Vec::new()).count(), 0);
    }

    #[test]
    fn a_blocking_spawn_waits_forever_which_main_reports_as_a_deadlock() {
        let pool = Pool::new(0);
        let msg = panic_message_of(|| {
            pool.spawn(|| ());
        });
        assert!(msg.contains("deadlock") && msg.contains("free place"), "{msg}");
    }
}
