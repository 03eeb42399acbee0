//! `verdant_sync::shared`: primitives waited on by greenlets of several hubs and plain
//! threads at once. Each hub is a `std::thread` whose closure runs hub code. Every
//! assertion comes from counters, ledgers and waiter counts, never from elapsed time:
//! where a test waits for something to happen on another thread it polls a count
//! (`until`), and the timeouts used only make timeouts *happen*, not decide outcomes.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use verdant_hub::{GreenletError, WaitFor, joinall, spawn, with_timeout, yield_now};
use verdant_sync::shared::channel::{
    self, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
};
use verdant_sync::shared::{BoundedSemaphore, Event, Semaphore};

const LONG: Duration = Duration::from_secs(60);

/// Polls `done` (sleeping a little in between, so the poller leaves the core to the
/// threads it waits for) until it holds.
fn until(mut done: impl FnMut() -> bool) {
    while !done() {
        thread::sleep(Duration::from_millis(1));
    }
}

/// One bit per item: marks each item once, and says if it had been marked already.
struct Ledger {
    bits: Vec<AtomicU64>,
}

impl Ledger {
    fn new(items: usize) -> Ledger {
        Ledger { bits: (0..items.div_ceil(64)).map(|_| AtomicU64::new(0)).collect() }
    }

    /// Marks `item`; returns `false` if it was marked before.
    fn mark(&self, item: usize) -> bool {
        let bit = 1 << (item % 64);
        self.bits[item / 64].fetch_or(bit, Ordering::Relaxed) & bit == 0
    }

    fn is_marked(&self, item: usize) -> bool {
        self.bits[item / 64].load(Ordering::Relaxed) & (1 << (item % 64)) != 0
    }

    fn count(&self) -> usize {
        self.bits.iter().map(|word| word.load(Ordering::Relaxed).count_ones() as usize).sum()
    }
}

/// A small deterministic pseudo-random sequence (xorshift), for kill and timeout choices.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

// ---- Throughput and order ----------------------------------------------------------------

#[test]
fn a_million_items_from_four_hubs_and_two_threads_reach_four_hubs_once_each_in_producer_order() {
    const PRODUCER_HUBS: usize = 4;
    const GREENLETS_PER_HUB: usize = 50;
    const PER_GREENLET: usize = 4_950;
    const PRODUCER_THREADS: usize = 2;
    const PER_THREAD: usize = 5_000;
    const CONSUMER_HUBS: usize = 4;
    const CONSUMERS_PER_HUB: usize = 8;
    const GREENLET_PRODUCERS: usize = PRODUCER_HUBS * GREENLETS_PER_HUB;
    const PRODUCERS: usize = GREENLET_PRODUCERS + PRODUCER_THREADS;
    const TOTAL: usize = GREENLET_PRODUCERS * PER_GREENLET + PRODUCER_THREADS * PER_THREAD;
    assert_eq!(TOTAL, 1_000_000);

    // Producer `p`'s items are `first[p]..first[p] + count(p)`: its item number `seq` is
    // sent as `(p << 32) | seq`, and lands on bit `first[p] + seq` of the ledger.
    let count = |p: usize| if p < GREENLET_PRODUCERS { PER_GREENLET } else { PER_THREAD };
    let first: Arc<Vec<usize>> = Arc::new(
        (0..PRODUCERS).scan(0, |next, p| Some(std::mem::replace(next, *next + count(p)))).collect(),
    );
    let ledger = Arc::new(Ledger::new(TOTAL));
    let (tx, rx) = channel::bounded::<u64>(1024);

    let consumers: Vec<_> = (0..CONSUMER_HUBS)
        .map(|_| {
            let (rx, ledger, first) = (rx.clone(), ledger.clone(), first.clone());
            thread::spawn(move || {
                let received = Rc::new(Cell::new(0usize));
                let greenlets: Vec<_> = (0..CONSUMERS_PER_HUB)
                    .map(|_| {
                        let (rx, ledger, first) = (rx.clone(), ledger.clone(), first.clone());
                        let received = received.clone();
                        spawn(move || {
                            // The last sequence number this consumer saw from each producer.
                            let mut last = vec![None::<usize>; PRODUCERS];
                            while let Ok(item) = rx.recv() {
                                let (p, seq) =
                                    ((item >> 32) as usize, (item & 0xffff_ffff) as usize);
                                assert!(last[p] < Some(seq), "producer {p}: {seq} after {last:?}");
                                last[p] = Some(seq);
                                assert!(
                                    ledger.mark(first[p] + seq),
                                    "item {p}/{seq} received twice"
                                );
                                received.set(received.get() + 1);
                            }
                        })
                    })
                    .collect();
                drop(rx);
                assert!(all_succeeded(&greenlets));
                received.get()
            })
        })
        .collect();
    drop(rx);

    let producer_hubs: Vec<_> = (0..PRODUCER_HUBS)
        .map(|hub| {
            let tx = tx.clone();
            thread::spawn(move || {
                let greenlets: Vec<_> = (0..GREENLETS_PER_HUB)
                    .map(|g| {
                        let tx = tx.clone();
                        let p = (hub * GREENLETS_PER_HUB + g) as u64;
                        spawn(move || {
                            for seq in 0..PER_GREENLET as u64 {
                                tx.send((p << 32) | seq).unwrap();
                            }
                        })
                    })
                    .collect();
                drop(tx);
                assert!(all_succeeded(&greenlets));
            })
        })
        .collect();
    let producer_threads: Vec<_> = (0..PRODUCER_THREADS)
        .map(|t| {
            let tx = tx.clone();
            let p = (GREENLET_PRODUCERS + t) as u64;
            thread::spawn(move || {
                for seq in 0..PER_THREAD as u64 {
                    tx.send((p << 32) | seq).unwrap();
                }
            })
        })
        .collect();
    drop(tx); // the producers hold the only senders: the consumers end when they are done

    for producer in producer_hubs.into_iter().chain(producer_threads) {
        producer.join().unwrap();
    }
    let received: usize = consumers.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(received, TOTAL);
    assert_eq!(ledger.count(), TOTAL, "every item received");
}

/// Joins `greenlets`; whether none of them failed (a failed one's error is printed).
fn all_succeeded<T: 'static>(greenlets: &[verdant_hub::Greenlet<T>]) -> bool {
    joinall(greenlets, WaitFor::all());
    greenlets.iter().all(|g| match g.error() {
        None => true,
        Some(error) => {
            eprintln!("a greenlet failed: {error}");
            false
        }
    })
}

// ---- Kills and timeouts lose nothing ---------------------------------------------------

#[test]
fn a_receiver_killed_as_it_is_notified_leaves_the_item_to_the_next_receiver() {
    let (tx, rx) = channel::unbounded::<u32>();
    let receivers: Vec<_> = (0..3)
        .map(|_| {
            let rx = rx.clone();
            spawn(move || rx.recv())
        })
        .collect();
    yield_now();
    assert_eq!(rx.waiting(), 3);
    tx.send(7).unwrap(); // notifies the first receiver, which has not run yet...
    assert_eq!(rx.waiting(), 2);
    receivers[0].kill(); // ...and is killed before it does
    assert_eq!(receivers[0].get(), Err(GreenletError::Killed));
    assert_eq!(receivers[1].get(), Ok(Ok(7)), "the notification was passed on");
    assert_eq!(rx.waiting(), 1);
    drop(tx);
    assert_eq!(receivers[2].get(), Ok(Err(RecvError)), "the last sender's drop woke it");
}

#[test]
fn a_sender_killed_as_it_is_given_room_leaves_the_room_to_the_next_sender() {
    let (tx, rx) = channel::bounded::<u32>(1);
    tx.send(0).unwrap();
    let senders: Vec<_> = [1, 2]
        .into_iter()
        .map(|item| {
            let tx = tx.clone();
            spawn(move || tx.send(item))
        })
        .collect();
    yield_now();
    assert_eq!(tx.waiting(), 2);
    assert_eq!(rx.recv(), Ok(0)); // room: notifies the first sender...
    senders[0].kill(); // ...killed before it sends
    assert_eq!(senders[0].get(), Err(GreenletError::Killed));
    assert_eq!(senders[1].get(), Ok(Ok(())), "the room was passed on");
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn an_acquirer_killed_as_it_is_handed_a_permit_passes_the_permit_on() {
    let sem = Semaphore::new(1);
    let held = sem.acquire();
    let acquirers: Vec<_> = (0..2)
        .map(|n| {
            let sem = sem.clone();
            spawn(move || {
                let _permit = sem.acquire();
                n
            })
        })
        .collect();
    yield_now();
    assert_eq!(sem.waiting(), 2);
    drop(held); // handed to the first acquirer...
    assert_eq!((sem.available(), sem.waiting()), (0, 1));
    acquirers[0].kill(); // ...killed before it runs: it releases the permit to the next
    assert_eq!(acquirers[0].get(), Err(GreenletError::Killed));
    assert_eq!(acquirers[1].get(), Ok(1));
    assert_eq!((sem.available(), sem.waiting()), (1, 0), "no permit leaked");
}

#[test]
fn waits_cut_short_by_with_timeout_leave_no_waiter_behind() {
    let (tx, rx) = channel::bounded::<u32>(1);
    tx.send(0).unwrap();
    let (sem, event) = (Semaphore::new(0), Event::new());
    assert!(with_timeout(Duration::from_millis(1), || rx.recv()).is_ok()); // an item: no wait
    assert!(with_timeout(Duration::from_millis(1), || tx.send(1)).is_ok()); // room: no wait
    assert!(with_timeout(Duration::from_millis(1), || tx.send(2)).is_err());
    assert!(with_timeout(Duration::from_millis(1), || drop(sem.acquire())).is_err());
    assert!(with_timeout(Duration::from_millis(1), || event.wait()).is_err());
    assert_eq!((tx.waiting(), sem.waiting(), event.waiting()), (0, 0, 0));
    assert_eq!(rx.try_recv(), Ok(1), "the send cut short did not send");
    assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Err(RecvTimeoutError::Timeout));
    assert_eq!(rx.waiting(), 0);
    assert_eq!(sem.available(), 0, "the acquire cut short took nothing");
}

#[test]
fn kills_and_timeouts_of_parked_cross_hub_senders_and_receivers_lose_nothing() {
    const PER_SENDER: usize = 2_000;
    const SENDERS_PER_HUB: usize = 6;
    const HUBS: usize = 2;
    const ITEMS: usize = PER_SENDER * SENDERS_PER_HUB * HUBS;
    let sent = Arc::new(Ledger::new(ITEMS));
    let received = Arc::new(Ledger::new(ITEMS));
    let (tx, rx) = channel::bounded::<u32>(4);
    let kills = Arc::new(AtomicUsize::new(0));
    let timeouts = Arc::new(AtomicUsize::new(0));

    let producers: Vec<_> = (0..HUBS)
        .map(|hub| {
            let (tx, sent, kills, timeouts) =
                (tx.clone(), sent.clone(), kills.clone(), timeouts.clone());
            thread::spawn(move || {
                let senders: Vec<_> = (0..SENDERS_PER_HUB)
                    .map(|s| {
                        let (tx, sent, timeouts) = (tx.clone(), sent.clone(), timeouts.clone());
                        let start = (hub * SENDERS_PER_HUB + s) * PER_SENDER;
                        spawn(move || {
                            let mut dice = Dice(start as u64 + 1);
                            for item in start..start + PER_SENDER {
                                let limit = Duration::from_micros(50 + dice.roll(400));
                                match with_timeout(limit, || tx.send(item as u32)) {
                                    Ok(Ok(())) => assert!(sent.mark(item)),
                                    Ok(Err(SendError(_))) => unreachable!("receivers live"),
                                    Err(_) => drop(timeouts.fetch_add(1, Ordering::Relaxed)),
                                }
                            }
                        })
                    })
                    .collect();
                // Kill a few senders while they run: their remaining items are not sent.
                let mut dice = Dice(hub as u64 + 99);
                for _ in 0..3 {
                    for _ in 0..dice.roll(200) {
                        yield_now();
                    }
                    let victim = &senders[dice.roll(SENDERS_PER_HUB as u64) as usize];
                    if !victim.ready() {
                        victim.kill();
                        kills.fetch_add(1, Ordering::Relaxed);
                    }
                }
                drop(tx);
                joinall(&senders, WaitFor::all());
            })
        })
        .collect();
    drop(tx);

    let consumers: Vec<_> = (0..HUBS)
        .map(|hub| {
            let (rx, received, kills, timeouts) =
                (rx.clone(), received.clone(), kills.clone(), timeouts.clone());
            thread::spawn(move || {
                let over = Rc::new(Cell::new(false));
                let receive = {
                    let (rx, received, over) = (rx.clone(), received.clone(), over.clone());
                    move |limit: Duration| match with_timeout(limit, || rx.recv()) {
                        // Nothing blocks between the receive and the mark: a kill cannot fall between.
                        Ok(Ok(item)) => assert!(received.mark(item as usize), "{item} twice"),
                        Ok(Err(RecvError)) => over.set(true),
                        Err(_) => drop(timeouts.fetch_add(1, Ordering::Relaxed)),
                    }
                };
                let steady: Vec<_> = (0..4)
                    .map(|r| {
                        let (receive, over) = (receive.clone(), over.clone());
                        spawn(move || {
                            let mut dice = Dice(hub as u64 * 10 + r + 7);
                            while !over.get() {
                                receive(Duration::from_micros(50 + dice.roll(400)));
                            }
                        })
                    })
                    .collect();
                // Victims: receivers killed after a few turns, parked or just notified.
                let mut dice = Dice(hub as u64 + 1234);
                while !over.get() {
                    let receive = receive.clone();
                    let over = over.clone();
                    let victim = spawn(move || {
                        while !over.get() {
                            receive(LONG);
                        }
                    });
                    for _ in 0..dice.roll(4) {
                        yield_now();
                    }
                    victim.kill();
                    kills.fetch_add(1, Ordering::Relaxed);
                }
                joinall(&steady, WaitFor::all());
            })
        })
        .collect();
    drop(rx);

    for hub in producers.into_iter().chain(consumers) {
        hub.join().unwrap();
    }
    let delivered = (0..ITEMS).filter(|&item| received.is_marked(item)).count();
    assert_eq!(delivered, sent.count(), "each item sent was received once");
    assert!((0..ITEMS).all(|item| sent.is_marked(item) == received.is_marked(item)));
    assert!(kills.load(Ordering::Relaxed) > 0);
    eprintln!(
        "{} of {ITEMS} items sent, {} kills, {} timeouts",
        sent.count(),
        kills.load(Ordering::Relaxed),
        timeouts.load(Ordering::Relaxed)
    );
}

#[test]
fn a_shared_semaphore_under_kills_and_timeouts_never_leaks_or_exceeds_its_permits() {
    const PERMITS: usize = 2;
    const HUBS: usize = 3;
    let sem = Semaphore::new(PERMITS);
    let holders = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let acquired = Arc::new(AtomicUsize::new(0));

    /// Counts a holder while it lives (also when a kill unwinds it).
    struct Holding<'a>(&'a AtomicUsize);
    impl Drop for Holding<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let hubs: Vec<_> = (0..HUBS)
        .map(|hub| {
            let (sem, holders, most, acquired) =
                (sem.clone(), holders.clone(), most.clone(), acquired.clone());
            thread::spawn(move || {
                let greenlets: Vec<_> = (0..10)
                    .map(|g| {
                        let (sem, holders, most, acquired) =
                            (sem.clone(), holders.clone(), most.clone(), acquired.clone());
                        spawn(move || {
                            let mut dice = Dice((hub * 10 + g + 1) as u64);
                            for _ in 0..300 {
                                let limit = Duration::from_micros(20 + dice.roll(200));
                                let Some(_permit) = sem.acquire_timeout(limit) else { continue };
                                let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                                most.fetch_max(now, Ordering::SeqCst);
                                acquired.fetch_add(1, Ordering::Relaxed);
                                let _holding = Holding(&holders);
                                yield_now(); // hold it across a blocking point
                            }
                        })
                    })
                    .collect();
                let mut dice = Dice(hub as u64 + 77);
                for _ in 0..20 {
                    for _ in 0..dice.roll(50) {
                        yield_now();
                    }
                    greenlets[dice.roll(10) as usize].kill();
                }
                joinall(&greenlets, WaitFor::all());
            })
        })
        .collect();
    let plain = {
        let (sem, holders, most, acquired) =
            (sem.clone(), holders.clone(), most.clone(), acquired.clone());
        thread::spawn(move || {
            for _ in 0..500 {
                let _permit = sem.acquire();
                let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                acquired.fetch_add(1, Ordering::Relaxed);
                let _holding = Holding(&holders);
            }
        })
    };
    for thread in hubs.into_iter().chain([plain]) {
        thread.join().unwrap();
    }
    assert!(most.load(Ordering::SeqCst) <= PERMITS, "never more holders than permits");
    assert!(acquired.load(Ordering::Relaxed) >= 500);
    assert_eq!((sem.available(), sem.waiting()), (PERMITS, 0), "every permit is back");
}

// ---- Semaphore order ------------------------------------------------------------------

#[test]
fn a_shared_semaphore_serves_hubs_and_threads_first_in_first_out() {
    let sem = Semaphore::new(0);
    let order = Arc::new(Mutex::new(Vec::new()));
    // Three waiters queue up in a known order: a thread, a greenlet on a hub, a thread.
    let mut waiters = Vec::new();
    for (n, on_hub) in [(1, false), (2, true), (3, false)] {
        let (s, order) = (sem.clone(), order.clone());
        waiters.push(thread::spawn(move || {
            let take = move || {
                // Keep the permit: the next release goes to the next waiter.
                std::mem::forget(s.acquire());
                order.lock().unwrap().push(n);
            };
            if on_hub { spawn(take).get().unwrap() } else { take() }
        }));
        until(|| sem.waiting() == n);
    }
    for released in 1..=3 {
        sem.release();
        until(|| order.lock().unwrap().len() == released);
    }
    waiters.into_iter().for_each(|w| w.join().unwrap());
    assert_eq!(*order.lock().unwrap(), [1, 2, 3]);
    assert_eq!(sem.available(), 0);
}

#[test]
fn a_releaser_that_asks_again_queues_behind_the_waiters() {
    let sem = BoundedSemaphore::new(1);
    let go = Event::new();
    let permit = sem.acquire();
    let (s, g) = (sem.clone(), go.clone());
    let waiter = thread::spawn(move || {
        let _permit = s.acquire();
        g.wait(); // hold it until told
        s.available()
    });
    until(|| sem.waiting() == 1);
    drop(permit); // handed to the waiter, running or not: not free for anyone else
    assert!(sem.try_acquire().is_none());
    assert!(sem.acquire_timeout(Duration::from_millis(1)).is_none());
    go.set();
    assert_eq!(waiter.join().unwrap(), 0);
    assert_eq!(sem.available(), 1);
    assert!(sem.release().is_err(), "a bounded semaphore refuses an extra release");
}

// ---- Event ------------------------------------------------------------------------------

#[test]
fn an_event_set_from_a_plain_thread_wakes_greenlets_on_three_hubs_and_plain_waiters() {
    const HUBS: usize = 3;
    const GREENLETS: usize = 10;
    const THREADS: usize = 2;
    let event = Event::new();
    let woken = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for _ in 0..HUBS {
        let (event, woken) = (event.clone(), woken.clone());
        threads.push(thread::spawn(move || {
            let greenlets: Vec<_> = (0..GREENLETS)
                .map(|_| {
                    let (event, woken) = (event.clone(), woken.clone());
                    spawn(move || {
                        assert!(event.wait_timeout(LONG));
                        woken.fetch_add(1, Ordering::SeqCst);
                    })
                })
                .collect();
            event.wait(); // the hub's main code waits too, running the greenlets
            woken.fetch_add(1, Ordering::SeqCst);
            assert!(all_succeeded(&greenlets));
        }));
    }
    for _ in 0..THREADS {
        let (event, woken) = (event.clone(), woken.clone());
        threads.push(thread::spawn(move || {
            assert!(event.wait_timeout(LONG));
            woken.fetch_add(1, Ordering::SeqCst);
        }));
    }
    let everyone = HUBS * (GREENLETS + 1) + THREADS;
    until(|| event.waiting() == everyone);
    assert_eq!(woken.load(Ordering::SeqCst), 0);
    let setter = {
        let event = event.clone();
        thread::spawn(move || {
            event.set();
            event.clear(); // too late to hold anyone back: they were all notified
        })
    };
    setter.join().unwrap();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(woken.load(Ordering::SeqCst), everyone);
    assert!(!event.is_set());
    assert_eq!(event.waiting(), 0);
}

// ---- Deadlock detection and disconnection ----------------------------------------------------

#[test]
fn a_hub_waiting_only_on_shared_primitives_is_not_reported_deadlocked() {
    let (tx, rx) = channel::unbounded::<&str>();
    let probe = rx.clone(); // to count the waiting receivers
    let (event, sem) = (Event::new(), Semaphore::new(0));
    let hub = {
        let (event, sem) = (event.clone(), sem.clone());
        thread::spawn(move || {
            // The main code waits on a greenlet that waits on the channel: nothing on
            // this hub can wake either, only the other thread.
            let rx2 = rx.clone();
            let g = spawn(move || rx2.recv());
            assert_eq!(g.get(), Ok(Ok("to the greenlet")));
            assert_eq!(rx.recv(), Ok("to the main code"));
            event.wait();
            drop(sem.acquire());
            rx.recv()
        })
    };
    until(|| tx.is_empty() && probe.waiting() == 1);
    tx.send("to the greenlet").unwrap();
    until(|| probe.waiting() == 1);
    tx.send("to the main code").unwrap();
    until(|| event.waiting() == 1);
    event.set();
    until(|| sem.waiting() == 1);
    sem.release();
    until(|| probe.waiting() == 1);
    drop(tx); // the last sender: the hub's receive ends
    assert_eq!(hub.join().unwrap(), Err(RecvError));
}

#[test]
fn dropping_the_last_receiver_or_closing_wakes_every_waiter_with_an_error() {
    // Senders waiting for room, on a hub and on a thread, fail when the receivers go.
    let (tx, rx) = channel::bounded::<u32>(1);
    tx.send(0).unwrap();
    let on_hub = {
        let tx = tx.clone();
        thread::spawn(move || spawn(move || tx.send(1)).get().unwrap())
    };
    let on_thread = {
        let tx = tx.clone();
        thread::spawn(move || tx.send_timeout(2, LONG))
    };
    until(|| tx.waiting() == 2);
    drop(rx);
    assert_eq!(on_hub.join().unwrap(), Err(SendError(1)), "the item comes back");
    assert_eq!(on_thread.join().unwrap(), Err(SendTimeoutError::Disconnected(2)));

    // close(): receivers take what is left, then fail; sends fail at once.
    let (tx, rx) = channel::unbounded::<u32>();
    tx.send(5).unwrap();
    let waiter = {
        let rx = rx.clone();
        thread::spawn(move || {
            let first = spawn({
                let rx = rx.clone();
                move || rx.recv()
            });
            (first.get().unwrap(), rx.recv())
        })
    };
    until(|| rx.is_empty() && rx.waiting() == 1);
    rx.close();
    assert_eq!(waiter.join().unwrap(), (Ok(5), Err(RecvError)));
    assert_eq!(tx.send(6), Err(SendError(6)));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[test]
fn the_shared_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Event>();
    check::<Semaphore>();
    check::<BoundedSemaphore>();
    check::<channel::Sender<String>>();
    check::<channel::Receiver<String>>();
}

#[test]
fn a_waiter_whose_hub_thread_ended_does_not_swallow_a_permit_or_an_item() {
    let sem = Semaphore::new(0);
    let (tx, rx) = channel::unbounded::<u32>();
    // A hub thread ends with one greenlet parked on each: they will never run again.
    let (s, r) = (sem.clone(), rx.clone());
    thread::spawn(move || {
        spawn(move || drop(s.acquire()));
        spawn(move || r.recv());
        yield_now();
    })
    .join()
    .unwrap();
    assert_eq!((sem.waiting(), rx.waiting()), (1, 1));
    // Live waiters queue up behind them.
    let (s, r) = (sem.clone(), rx.clone());
    let live = thread::spawn(move || {
        let greenlet = spawn(move || r.recv());
        let permit = s.acquire_timeout(LONG).map(std::mem::forget);
        (permit.is_some(), greenlet.get().unwrap())
    });
    until(|| sem.waiting() == 2 && rx.waiting() == 2);
    sem.release(); // handed to the dead waiter first, which cannot take it: passed on
    tx.send(9).unwrap(); // likewise
    assert_eq!(live.join().unwrap(), (true, Ok(9)));
    assert_eq!((sem.available(), sem.waiting()), (0, 0));
    assert_eq!(rx.waiting(), 0);
}

#[test]
fn wake_ups_to_a_running_hub_go_through_its_inbox_without_an_eventfd_write() {
    const WAITERS: usize = 100;
    let event = Event::new();
    let (spinning, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let writes = Arc::new(AtomicU64::new(u64::MAX));
    let hub = {
        let (event, spinning, done, writes) =
            (event.clone(), spinning.clone(), done.clone(), writes.clone());
        thread::spawn(move || {
            let woken = Rc::new(Cell::new(0));
            let waiters: Vec<_> = (0..WAITERS)
                .map(|_| {
                    let (event, woken) = (event.clone(), woken.clone());
                    spawn(move || {
                        event.wait();
                        woken.set(woken.get() + 1);
                    })
                })
                .collect();
            yield_now(); // they all wait now
            let door = verdant_hub::remote_handle();
            let before = door.wake_writes();
            // Keep the hub busy (never asleep) while the other thread sets the event: a
            // poster writes the eventfd only to wake a sleeping hub.
            spawn(move || {
                spinning.store(true, Ordering::SeqCst);
                while !done.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
            })
            .join();
            assert!(all_succeeded(&waiters));
            writes.store(door.wake_writes() - before, Ordering::SeqCst);
            woken.get()
        })
    };
    until(|| spinning.load(Ordering::SeqCst));
    assert_eq!(event.waiting(), WAITERS);
    event.set(); // a hundred wake-ups, queued in the hub's inbox
    done.store(true, Ordering::SeqCst);
    assert_eq!(hub.join().unwrap(), WAITERS);
    assert_eq!(writes.load(Ordering::SeqCst), 0, "no eventfd write for a running hub");
}
