//! What the soak counts, shared by every thread: plain atomic counters, and the first
//! few failure messages (capped, so a run that goes wrong cannot fill memory with them).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// At most this many failure messages are kept (the rest are only counted).
const KEPT_FAILURES: usize = 20;

/// The counters. Every client bumps them; the reporter reads them.
#[derive(Debug, Default)]
pub struct Tally {
    /// Echo messages whose echo came back byte-exact.
    pub echoed: AtomicU64,
    /// HTTP responses that were exactly the expected ones.
    pub http_ok: AtomicU64,
    /// Bad requests answered with the expected 4xx/5xx and a close.
    pub refused: AtomicU64,
    /// Connections the clients reset (`SO_LINGER` 0) in the middle of an exchange.
    pub resets: AtomicU64,
    /// Slow or silent clients that a server's timeout closed as expected.
    pub slow_closed: AtomicU64,
    /// Process-pool calls whose values were right.
    pub pool_ok: AtomicU64,
    /// Process-pool tasks that killed their worker and failed with `WorkerDied`, as meant.
    pub pool_died: AtomicU64,
    /// Process-pool calls whose outcome was not the expected one: a failure where a value
    /// was due, a wrong value, or a crash task that did not fail with `WorkerDied`.
    pub pool_unexpected: AtomicU64,
    /// Anything a network client saw that it should not have: a wrong byte, a wrong status, a
    /// hang (past the hang guard), an error where none was due.
    pub failures: AtomicU64,
    messages: Mutex<Vec<String>>,
}

/// One reading of every counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub echoed: u64,
    pub http_ok: u64,
    pub refused: u64,
    pub resets: u64,
    pub slow_closed: u64,
    pub pool_ok: u64,
    pub pool_died: u64,
    pub pool_unexpected: u64,
    pub failures: u64,
}

impl Tally {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Records a verification failure; the first few messages are kept for the report.
    pub fn fail(&self, message: String) {
        Tally::bump(&self.failures);
        self.keep(message);
    }

    /// Records a process-pool outcome that was not the expected one.
    pub fn pool_surprise(&self, message: String) {
        Tally::bump(&self.pool_unexpected);
        self.keep(message);
    }

    fn keep(&self, message: String) {
        let mut messages = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        if messages.len() < KEPT_FAILURES {
            messages.push(message);
        }
    }

    /// The kept failure messages from number `from` on.
    pub fn messages_from(&self, from: usize) -> Vec<String> {
        let messages = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        messages.get(from..).unwrap_or_default().to_vec()
    }

    /// Every counter, now.
    pub fn counts(&self) -> Counts {
        Counts {
            echoed: self.echoed.load(Relaxed),
            http_ok: self.http_ok.load(Relaxed),
            refused: self.refused.load(Relaxed),
            resets: self.resets.load(Relaxed),
            slow_closed: self.slow_closed.load(Relaxed),
            pool_ok: self.pool_ok.load(Relaxed),
            pool_died: self.pool_died.load(Relaxed),
            pool_unexpected: self.pool_unexpected.load(Relaxed),
            failures: self.failures.load(Relaxed),
        }
    }
}
