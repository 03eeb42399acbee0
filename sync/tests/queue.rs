//! Queues and channels: order, limits, timeouts, closing, and nothing lost.

use verdant_testutil as util;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use util::{Log, panic_message_of};
use verdant_hub::WaitFor;
use verdant_hub::{GreenletError, sleep, spawn, yield_now};
use verdant_sync::{Channel, GetError, JoinableQueue, LifoQueue, PriorityQueue, PutError, Queue};

#[test]
fn a_bounded_queue_blocks_the_producer_while_full() {
    let q = Queue::bounded(2);
    let log = Log::new();
    let (qp, lp) = (q.clone(), log.clone());
    let producer = spawn(move || {
        for i in 0..4 {
            qp.put(i).unwrap();
            lp.push(format!("put {i}"));
        }
    });
    yield_now();
    assert_eq!(log.take(), ["put 0", "put 1"], "the third put waits");
    assert!(q.is_full() && q.len() == 2);
    assert_eq!(q.get(), Ok(0));
    yield_now();
    assert_eq!(log.take(), ["put 2"]);
    let rest: Vec<i32> = (0..3).map(|_| q.get().unwrap()).collect();
    assert_eq!(rest, [1, 2, 3]);
    producer.join();
    assert!(q.is_empty());
}

#[test]
fn nowait_and_timeout_forms_report_full_and_empty() {
    let q = Queue::bounded(1);
    assert_eq!(q.get_nowait(), Err(GetError::Empty));
    assert_eq!(q.get_timeout(Duration::from_millis(2)), Err(GetError::Empty));
    q.put_nowait("a").unwrap();
    match q.put_nowait("b") {
        Err(PutError::Full(item)) => assert_eq!(item, "b", "the item comes back"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(q.put_timeout("c", Duration::from_millis(2)), Err(PutError::Full("c"))));
    assert_eq!(q.peek_nowait(), Ok("a"));
    assert_eq!(q.peek(), Ok("a"));
    assert_eq!(q.len(), 1, "peek does not remove");
    assert_eq!(q.get_nowait(), Ok("a"));
    assert_eq!(q.capacity(), Some(1));
    assert_eq!(Queue::<u8>::new().capacity(), None);
}

#[test]
fn peek_waits_for_an_item_without_taking_it() {
    let q = Queue::new();
    let qq = q.clone();
    let peeker = spawn(move || qq.peek());
    yield_now();
    q.put(7).unwrap();
    assert_eq!(peeker.get().unwrap(), Ok(7));
    assert_eq!(q.get_nowait(), Ok(7));
}

#[test]
fn closing_ends_iteration_and_wakes_waiters() {
    let q: Queue<u32> = Queue::new();
    let qq = q.clone();
    let consumer = spawn(move || qq.iter().collect::<Vec<_>>());
    for i in 0..5 {
        q.put(i).unwrap();
    }
    yield_now();
    q.close();
    assert_eq!(consumer.get().unwrap(), [0, 1, 2, 3, 4]);
    assert!(matches!(q.put(9), Err(PutError::Closed(9))));
    assert_eq!(q.get(), Err(GetError::Closed));
    let full = Queue::bounded(1);
    full.put(1).unwrap();
    let f = full.clone();
    let blocked_putter = spawn(move || f.put(2));
    yield_now();
    full.close();
    assert!(matches!(blocked_putter.get().unwrap(), Err(PutError::Closed(2))));
    assert_eq!(full.get(), Ok(1), "items put before closing are still delivered");
}

#[test]
fn lifo_and_priority_orders() {
    let lifo = LifoQueue::new();
    let prio = PriorityQueue::new();
    for i in [3, 1, 2] {
        lifo.put(i).unwrap();
        prio.put(i).unwrap();
    }
    assert_eq!(lifo.try_iter().collect::<Vec<_>>(), [2, 1, 3]);
    assert_eq!(prio.try_iter().collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn joinable_queue_counts_unfinished_work() {
    let q = JoinableQueue::new();
    for i in 0..3 {
        q.put(i).unwrap();
    }
    assert_eq!(q.unfinished_tasks(), 3);
    assert!(!q.join_timeout(Duration::from_millis(1)));
    let qq = q.clone();
    let worker = spawn(move || {
        while let Ok(_job) = qq.get_nowait() {
            sleep(Duration::from_millis(1));
            qq.task_done().unwrap();
        }
    });
    q.join();
    assert_eq!(q.unfinished_tasks(), 0);
    worker.join();
    assert!(q.task_done().is_err(), "one task_done too many is an error");
}

#[test]
fn a_getter_killed_after_being_woken_passes_the_item_on() {
    let q = Queue::new();
    let got = Rc::new(RefCell::new(Vec::new()));
    let getter = |name: &'static str| {
        let (q, got) = (q.clone(), got.clone());
        spawn(move || {
            let item: u32 = q.get().unwrap();
            got.borrow_mut().push((name, item));
        })
    };
    let first = getter("first");
    let second = getter("second");
    yield_now(); // both wait, first in front
    q.put(42).unwrap(); // wakes `first`, which has not run yet
    first.kill_nowait();
    second.join();
    first.join();
    assert_eq!(*got.borrow(), [("second", 42)]);
    assert_eq!(first.error(), Some(GreenletError::Killed));
    assert!(q.is_empty());
}

/// Many producers and consumers, with consumers and producers killed and timing out at
/// random points: every item whose put succeeded is received exactly once.
#[test]
fn nothing_is_lost_under_kills_and_timeouts() {
    let q: Queue<u32> = Queue::bounded(3);
    let put_ok = Rc::new(RefCell::new(Vec::new()));
    let received = Rc::new(RefCell::new(Vec::new()));
    let mut seed = 7u64;
    let mut rand = move |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (seed >> 33) % n
    };
    let mut everyone = Vec::new();
    for p in 0..8u32 {
        let (q, put_ok) = (q.clone(), put_ok.clone());
        let timeout = Duration::from_micros(200 + rand(2000));
        everyone.push(spawn(move || {
            for i in 0..200 {
                let item = p * 1000 + i;
                if q.put_timeout(item, timeout).is_ok() {
                    put_ok.borrow_mut().push(item);
                }
                if i % 7 == 0 {
                    yield_now();
                }
            }
        }));
    }
    for _ in 0..6 {
        let (q, received) = (q.clone(), received.clone());
        let timeout = Duration::from_micros(100 + rand(1500));
        everyone.push(spawn(move || {
            loop {
                match q.get_timeout(timeout) {
                    Ok(item) => received.borrow_mut().push(item),
                    Err(GetError::Empty) => yield_now(),
                    Err(GetError::Closed) => return,
                }
            }
        }));
    }
    // Kill some greenlets while they are blocked in put or get.
    for round in 0..20 {
        sleep(Duration::from_micros(300));
        let victim = &everyone[rand(everyone.len() as u64) as usize];
        if round % 2 == 0 {
            victim.kill_nowait();
        }
    }
    verdant_hub::joinall(&everyone[..8], WaitFor::all()); // producers finish (or were killed)
    q.close();
    verdant_hub::joinall(&everyone, WaitFor::all());
    received.borrow_mut().extend(q.try_iter());
    let count = |items: &[u32]| {
        let mut m = BTreeMap::new();
        for &i in items {
            *m.entry(i).or_insert(0) += 1;
        }
        m
    };
    let (put_ok, received) = (put_ok.borrow(), received.borrow());
    assert!(put_ok.len() > 100, "the test exercised the queue: {}", put_ok.len());
    assert_eq!(count(&put_ok), count(&received), "every accepted item arrived exactly once");
    // Each producer's items arrived in the order it put them (FIFO): `received` records
    // gets in the order they completed, and a producer puts its items in increasing order.
    for p in 0..8u32 {
        let mine: Vec<u32> = received.iter().copied().filter(|i| i / 1000 == p).collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "producer {p}'s items out of order");
    }
}

#[test]
fn a_single_consumer_sees_fifo_order_despite_killed_rivals() {
    let q = Queue::new();
    let qq = q.clone();
    let rival = spawn(move || qq.get());
    let qq = q.clone();
    let consumer = spawn(move || (0..100).map(|_| qq.get().unwrap()).collect::<Vec<u32>>());
    yield_now();
    for i in 0..100 {
        q.put(i).unwrap();
        if i == 0 {
            rival.kill_nowait(); // woken for item 0, killed before taking it
        }
    }
    assert_eq!(consumer.get().unwrap(), (0..100).collect::<Vec<_>>());
}

#[test]
fn getting_from_a_queue_nothing_fills_is_a_deadlock() {
    let q: Queue<u8> = Queue::new();
    let msg = panic_message_of(|| {
        let _ = q.get();
    });
    assert!(msg.contains("deadlock") && msg.contains("Queue::get()"), "{msg}");
}

#[test]
fn a_channel_put_returns_only_after_a_getter_took_the_item() {
    let ch = Channel::new();
    let log = Log::new();
    let (c, l) = (ch.clone(), log.clone());
    let putter = spawn(move || {
        c.put("x").unwrap();
        l.push("put returned");
    });
    yield_now();
    assert_eq!(ch.putters_waiting(), 1);
    assert!(log.take().is_empty(), "no getter yet");
    let item = ch.get().unwrap();
    log.push(format!("got {item}"));
    putter.join();
    assert_eq!(log.take(), ["got x", "put returned"]);
}

#[test]
fn a_channel_putter_that_gives_up_keeps_its_item() {
    let ch = Channel::new();
    let result = ch.put_timeout(5, Duration::from_millis(2));
    assert!(matches!(result, Err(PutError::Full(5))));
    assert_eq!(ch.putters_waiting(), 0);
    let c = ch.clone();
    let killed = spawn(move || c.put(6));
    yield_now();
    killed.kill();
    assert_eq!(ch.get_nowait(), Err(GetError::Empty), "a killed putter's item is withdrawn");
    assert_eq!(ch.get_timeout(Duration::from_millis(2)), Err(GetError::Empty));
}

#[test]
fn a_channel_getter_waits_for_a_putter() {
    let ch = Channel::new();
    let c = ch.clone();
    let getter = spawn(move || c.get());
    yield_now();
    ch.put(9).unwrap();
    assert_eq!(getter.get().unwrap(), Ok(9));
    ch.close();
    assert_eq!(ch.get(), Err(GetError::Closed));
    let msg = panic_message_of(|| {
        let _ = Channel::new().put(1);
    });
    assert!(msg.contains("Channel::put()"), "{msg}");
}
