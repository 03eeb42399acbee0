//! Error reports that never block a hub: one line on stderr, written by a background
//! thread. Used for everything verdant reports on its own (a panicking link callback or
//! cross-thread job, a server's errors, a thread or process pool's failures).
//!
//! ```
//! verdant_hub::report::report("verdant: something worth a line".to_string());
//! ```
//!
//! A hub thread that writes to stderr itself stops every greenlet it runs as soon as the
//! write blocks: stderr on a pipe that nobody reads (a stalled log shipper, `| less`)
//! fills after 64 KiB, and the server stops serving. So a hub only queues the line, with
//! a non-blocking `try_send`, and one process-wide thread (started on first use) writes
//! the lines out and may block as long as it likes.
//!
//! Why a thread rather than non-blocking writes to fd 2: `O_NONBLOCK` belongs to the open
//! file description, which stderr shares with every other thread of the process and often
//! with the parent (a shell, a terminal); switching it on would make their ordinary
//! blocking writes fail with `EAGAIN`. And with a thread, lines are never cut in half.
//!
//! Invariants:
//!
//! * [`report`] never blocks and never allocates beyond the line it is given.
//! * At most `capacity` lines wait (each cut to 4 KiB), so a flood of
//!   errors costs bounded memory. Lines that do not fit are dropped and counted; the
//!   writer prints `verdant: N error reports dropped` before its next line, or once the
//!   queue is empty.
//! * Identical lines in a row are written once, then `verdant: the last report was
//!   repeated N more times` (as syslog does).
//! * Lines still queued when the process exits are lost.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};

/// Lines that may wait for the writer thread before new ones are dropped.
const QUEUE_LINES: usize = 1024;

/// The longest line kept, in bytes; longer ones are cut (at a character boundary).
pub(crate) const MAX_LINE: usize = 4096;

/// Queues `line` (without its newline) for stderr; never blocks. See the module docs.
pub fn report(line: String) {
    static STDERR: OnceLock<Reporter> = OnceLock::new();
    STDERR.get_or_init(|| Reporter::start(io::stderr(), QUEUE_LINES)).report(line);
}

/// What the hubs send to the writer thread.
enum Message {
    Line(String),
    /// Lines were dropped: look at the count.
    Dropped,
}

/// A bounded queue of lines and the thread that writes them out.
pub(crate) struct Reporter {
    /// `None` if the thread could not be started: then every line is dropped.
    queue: Option<SyncSender<Message>>,
    dropped: Arc<AtomicU64>,
}

impl Reporter {
    /// Starts the writer thread, with room for `capacity` waiting lines.
    pub(crate) fn start<W: Write + Send + 'static>(output: W, capacity: usize) -> Reporter {
        let (queue, lines) = sync_channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let thread = std::thread::Builder::new()
            .name("verdant-report".to_string())
            .spawn(move || write_lines(&lines, &counter, output));
        Reporter { queue: thread.is_ok().then_some(queue), dropped }
    }

    /// Queues `line`, or counts it as dropped if the queue is full.
    pub(crate) fn report(&self, mut line: String) {
        truncate(&mut line, MAX_LINE);
        let Some(queue) = &self.queue else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            queue.try_send(Message::Line(line))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            // Either this marker gets in, or the queue is still full and the writer looks
            // at the count after the line it takes next: the count is never forgotten.
            let _ = queue.try_send(Message::Dropped);
        }
    }
}

/// Cuts `line` to at most `max` bytes, at a character boundary.
fn truncate(line: &mut String, max: usize) {
    if line.len() > max {
        let end = (0..=max).rev().find(|&i| line.is_char_boundary(i)).unwrap_or(0);
        line.truncate(end);
    }
}

/// The writer thread: writes lines as they come until every sender is gone.
fn write_lines(lines: &Receiver<Message>, dropped: &AtomicU64, output: impl Write) {
    let mut output = Coalescer::new(output);
    while let Ok(mut message) = lines.recv() {
        loop {
            if let Message::Line(line) = message {
                output.line(line);
            }
            output.dropped(dropped.swap(0, Ordering::Relaxed));
            message = match lines.try_recv() {
                Ok(next) => next,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            };
        }
        output.flush_repeats(); // the queue is empty: say how often the last line repeated
    }
}

/// Writes lines, folding identical lines in a row into a count. Write errors are ignored:
/// there is nowhere left to report them.
struct Coalescer<W: Write> {
    output: W,
    last: String,
    repeats: u64,
}

impl<W: Write> Coalescer<W> {
    fn new(output: W) -> Coalescer<W> {
        Coalescer { output, last: String::new(), repeats: 0 }
    }

    fn line(&mut self, line: String) {
        if line == self.last {
            self.repeats += 1;
            return;
        }
        self.flush_repeats();
        self.write(format_args!("{line}"));
        self.last = line;
    }

    fn dropped(&mut self, count: u64) {
        if count > 0 {
            self.flush_repeats();
            self.write(format_args!("verdant: {count} error reports dropped (stderr is behind)"));
            self.last.clear();
        }
    }

    fn flush_repeats(&mut self) {
        if self.repeats > 0 {
            let repeats = std::mem::take(&mut self.repeats);
            self.write(format_args!("verdant: the last report was repeated {repeats} more times"));
        }
    }

    /// Writes one line with a single `write_all`, so lines of other threads do not
    /// interleave with it.
    fn write(&mut self, line: std::fmt::Arguments<'_>) {
        let _ = self.output.write_all(format!("{line}\n").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::mpsc::{Sender, channel};
    use std::time::Duration;

    const DROPPED_SUFFIX: &str = " error reports dropped (stderr is behind)";

    /// An output that blocks every write until the test lets it go, keeps the text, and
    /// says when the writer thread dropped it (the thread ended).
    struct Stalled {
        text: Arc<Mutex<String>>,
        go: Receiver<()>,
        done: Sender<()>,
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.go.recv(); // blocks until released
            self.text.lock().unwrap().push_str(std::str::from_utf8(buf).unwrap());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Drop for Stalled {
        fn drop(&mut self) {
            let _ = self.done.send(());
        }
    }

    #[test]
    fn a_stalled_output_never_blocks_the_reporter_and_drops_are_counted() {
        let (release, go) = channel();
        let (done, finished) = channel();
        let text = Arc::new(Mutex::new(String::new()));
        let reporter = Reporter::start(Stalled { text: text.clone(), go, done }, 4);
        for i in 0..100 {
            reporter.report(format!("error {i}")); // would hang here if it blocked
        }
        drop(release); // the output flows again: `recv` fails at once from now on
        drop(reporter); // the writer thread ends once the queue is empty
        finished.recv_timeout(Duration::from_secs(60)).expect("the writer thread ends");
        let text = text.lock().unwrap().clone();
        let written = text.lines().filter(|l| l.starts_with("error ")).count();
        let dropped: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("verdant: ")?.strip_suffix(DROPPED_SUFFIX))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no drop count in {text:?}"));
        assert!(written <= 5, "at most the queue (4) and the line being written: {text:?}");
        assert_eq!(written + dropped, 100, "{text:?}");
    }

    #[test]
    fn identical_lines_in_a_row_are_written_once_with_a_count() {
        let mut out = Coalescer::new(Vec::new());
        for line in ["a", "a", "a", "b", "a"] {
            out.line(line.to_string());
        }
        out.flush_repeats();
        out.dropped(3);
        out.line("a".to_string());
        let text = String::from_utf8(out.output).unwrap();
        assert_eq!(
            text,
            "a\nverdant: the last report was repeated 2 more times\nb\na\n\
             verdant: 3 error reports dropped (stderr is behind)\na\n"
        );
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let mut line = "é".repeat(10); // 2 bytes each
        truncate(&mut line, 5);
        assert_eq!(line, "éé");
    }
}
