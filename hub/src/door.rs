//! The sleeping/queued handshake between a hub and the threads that post to it.
//!
//! Three atomics decide whether a hub that is about to block in `epoll_wait` can miss a
//! message (or the end of the last piece of cross-thread work): `queued`, `sleeping` and
//! `outstanding`. They live in this type of their own, with no queue and no eventfd, so
//! that a model checker can run every interleaving of the protocol: under `--cfg loom`
//! the atomics are loom's, and the `model` tests at the bottom check that no interleaving
//! leaves the hub asleep with nobody to wake it (`.ci/run` runs them).
//!
//! # The protocol
//!
//! The hub stores `sleeping = true`, then loads `queued`; a poster stores `queued = true`,
//! then loads `sleeping`; all four accesses are `SeqCst`, so they happen in one total
//! order. Whichever store comes first in that order is seen by the other side's load:
//!
//! ```text
//!   1. hub stores sleeping, hub loads queued (false), poster stores queued, poster loads
//!      sleeping (true)  → the poster writes the eventfd; the hub's epoll_wait returns.
//!   2. poster stores queued, poster loads sleeping (false), hub stores sleeping, hub loads
//!      queued (true)    → the hub does not sleep; it drains at once.
//!   3. hub stores sleeping, poster stores queued, hub loads queued (true), poster loads
//!      sleeping (true)  → both act: the hub stays awake, and the eventfd write it no
//!      longer needs is read by its next poll (one spurious wake-up, harmless).
//!   4. poster stores queued, hub stores sleeping, poster loads sleeping (true), hub loads
//!      queued (true)    → as 3.
//! ```
//!
//! The one order that would lose a message — both loads seeing `false` — needs each load
//! to come before the other side's store, and each store before its own load: a cycle,
//! which a total order cannot have. The same argument covers `outstanding`: a poster
//! decrements it (after queueing its message, if any) and then loads `sleeping`; the hub
//! stores `sleeping` and then loads `outstanding` before it decides that nothing can ever
//! wake it (a deadlock).

#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Between a `SeqCst` store and the `SeqCst` load that must not pass it. The accesses
/// alone are enough in the Rust (C++20) model, which puts every `SeqCst` access in one
/// total order; loom does not model that order for accesses, only for fences
/// (tokio-rs/loom#180), so under loom the same guarantee is written as the fence it
/// checks. Outside loom this is nothing at all.
#[inline(always)]
fn store_load_barrier() {
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

/// The hub's sleep flag, the inbox's non-empty flag and the count of cross-thread work
/// that may still post (see the [module](self) docs for the protocol).
#[derive(Debug)]
pub(crate) struct Door {
    /// Whether the inbox is non-empty; lets the hub skip the inbox's lock when nothing came.
    queued: AtomicBool,
    /// Whether the hub is (about to be) blocked in `epoll_wait`. Posters write the eventfd
    /// only then: a hub that is running or spinning sees `queued` by itself.
    sleeping: AtomicBool,
    /// Live remote wakers and work guards: sources of future messages.
    outstanding: AtomicUsize,
}

impl Door {
    pub(crate) fn new() -> Door {
        Door {
            queued: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            outstanding: AtomicUsize::new(0),
        }
    }

    /// A poster queued a message (called under the inbox's lock).
    pub(crate) fn mark_queued(&self) {
        self.queued.store(true, Ordering::SeqCst);
    }

    /// The hub took every queued message (called under the inbox's lock).
    pub(crate) fn clear_queued(&self) {
        self.queued.store(false, Ordering::Relaxed);
    }

    /// Whether a message is queued (one atomic load: checked at every turn boundary).
    #[inline]
    pub(crate) fn has_messages(&self) -> bool {
        self.queued.load(Ordering::Acquire)
    }

    /// Whether the hub is asleep, so a poster that made the inbox non-empty must write
    /// the eventfd. Called after [`mark_queued`](Door::mark_queued).
    pub(crate) fn hub_is_asleep(&self) -> bool {
        store_load_barrier();
        self.sleeping.load(Ordering::SeqCst)
    }

    /// The hub is about to block in `epoll_wait`. Returns `false` (and stays awake) if a
    /// message came meanwhile.
    pub(crate) fn fall_asleep(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        store_load_barrier();
        if self.queued.load(Ordering::SeqCst) {
            self.sleeping.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The hub is awake again (its poll returned, or it decided not to block).
    pub(crate) fn wake_up(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Pieces of cross-thread work announced and not finished.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::SeqCst)
    }

    /// Counts one more piece of outstanding work: a message may still come.
    pub(crate) fn begin_one(&self) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
    }

    /// One piece of outstanding work ended, after its message (if any) was queued. Returns
    /// `true` if it was the last and the hub is asleep: the caller must wake the hub so
    /// that it re-checks for a deadlock.
    pub(crate) fn finish_one(&self) -> bool {
        self.outstanding.fetch_sub(1, Ordering::SeqCst) == 1 && self.hub_is_asleep()
    }

    /// Whether a message is queued or may still arrive.
    pub(crate) fn may_receive(&self) -> bool {
        // Senders queue their message before they stop counting as outstanding, so
        // reading `outstanding` first cannot miss a message sent by the last of them.
        self.outstanding.load(Ordering::SeqCst) > 0 || self.queued.load(Ordering::SeqCst)
    }
}

/// Every interleaving of the protocol, run by loom: `RUSTFLAGS="--cfg loom" cargo test -p
/// verdant-hub --lib --release door::model`.
#[cfg(all(test, loom))]
mod model {
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::sync::{Arc, Mutex};
    use loom::thread;

    use super::Door;

    /// What the hub's `wait_for_work` decided, with nothing else to do.
    #[derive(Debug, PartialEq)]
    enum Decision {
        /// It found a message, or one came while it fell asleep: it stays awake.
        Awake,
        /// It blocks in `epoll_wait` until the eventfd is written.
        Slept,
        /// Nothing is queued and nothing can post: a deadlock is reported.
        Deadlock,
    }

    /// The hub's side, as `Hub::wait_for_work` runs it with no timer and no I/O waiter.
    fn hub_decides(door: &Door) -> Decision {
        if door.has_messages() {
            return Decision::Awake;
        }
        if !door.may_receive() {
            return Decision::Deadlock;
        }
        if !door.fall_asleep() {
            return Decision::Awake;
        }
        if !door.may_receive() {
            door.wake_up();
            return Decision::Deadlock;
        }
        Decision::Slept
    }

    /// The inbox around the door: its queue (only its length matters here; the hub of
    /// the model never drains it) and whether its eventfd was written.
    struct Inbox {
        door: Door,
        queue: Mutex<usize>,
        eventfd: AtomicBool,
    }

    impl Inbox {
        fn new(outstanding: usize) -> Arc<Inbox> {
            let door = Door::new();
            for _ in 0..outstanding {
                door.begin_one();
            }
            Arc::new(Inbox { door, queue: Mutex::new(0), eventfd: AtomicBool::new(false) })
        }

        /// `Inbox::push`: queue under the lock, then write the eventfd only if the queue
        /// was empty and the hub is asleep.
        fn push(&self) {
            let was_empty = {
                let mut queue = self.queue.lock().unwrap();
                *queue += 1;
                self.door.mark_queued();
                *queue == 1
            };
            if was_empty && self.door.hub_is_asleep() {
                self.eventfd.store(true, Ordering::SeqCst);
            }
        }

        /// `Inbox::finish_one`: the last piece of work wakes a sleeping hub with a `Nop`.
        fn finish(&self) {
            if self.door.finish_one() {
                self.push();
            }
        }

        /// After the hub decided, with every poster done: check the decision.
        fn check(&self, decision: Decision, messages: bool) {
            if decision == Decision::Slept {
                assert!(self.eventfd.load(Ordering::SeqCst), "the hub sleeps, nobody wakes it");
            }
            if messages {
                assert_ne!(decision, Decision::Deadlock, "a deadlock reported with a message");
            }
        }
    }

    /// One poster holding the only piece of outstanding work, against the hub deciding
    /// whether to sleep. `message`: whether the poster sends before it finishes.
    fn run(message: bool) {
        loom::model(move || {
            let inbox = Inbox::new(1);
            let poster = {
                let inbox = inbox.clone();
                thread::spawn(move || {
                    if message {
                        inbox.push();
                    }
                    inbox.finish();
                })
            };
            let decision = hub_decides(&inbox.door);
            poster.join().unwrap();
            inbox.check(decision, message);
        });
    }

    #[test]
    fn a_message_posted_while_the_hub_falls_asleep_is_never_missed() {
        run(true);
    }

    #[test]
    fn the_last_piece_of_work_ending_while_the_hub_falls_asleep_wakes_it() {
        run(false);
    }

    /// Two posters, each with a message and a piece of work of its own: the second push
    /// finds the queue non-empty and leaves the eventfd alone. Three threads make the full
    /// search take minutes; interleavings with at most three preemptions take seconds.
    #[test]
    fn two_posters_and_a_falling_asleep_hub_lose_nothing() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let inbox = Inbox::new(2);
            let posters: Vec<_> = (0..2)
                .map(|_| {
                    let inbox = inbox.clone();
                    thread::spawn(move || {
                        inbox.push();
                        inbox.finish();
                    })
                })
                .collect();
            let decision = hub_decides(&inbox.door);
            for poster in posters {
                poster.join().unwrap();
            }
            inbox.check(decision, true);
        });
    }
}
