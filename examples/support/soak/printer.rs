//! Prints the series from a thread of its own, so that a stdout nobody reads never
//! blocks the server's hub: lines go through a bounded queue, and lines that do not fit
//! are dropped and counted.

use std::io::Write;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;

/// Lines waiting to be printed, at most.
const QUEUE: usize = 64;

/// The sending end; [`finish`](Printer::finish) flushes and stops the thread.
#[derive(Debug)]
pub struct Printer {
    lines: SyncSender<String>,
    thread: JoinHandle<()>,
    dropped: u64,
}

impl Printer {
    /// Starts the printing thread.
    pub fn start() -> Printer {
        let (lines, queue) = mpsc::sync_channel::<String>(QUEUE);
        let thread = std::thread::spawn(move || {
            for line in queue {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}").and_then(|()| out.flush());
            }
        });
        Printer { lines, thread, dropped: 0 }
    }

    /// Queues `line` without waiting; drops it if the queue is full.
    pub fn print(&mut self, line: String) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.lines.try_send(line)
        {
            self.dropped += 1;
        }
    }

    /// Prints what is queued, stops the thread, and says how many lines were dropped.
    pub fn finish(self) -> u64 {
        drop(self.lines);
        let _ = self.thread.join();
        self.dropped
    }
}
