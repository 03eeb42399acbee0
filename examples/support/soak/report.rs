//! The series: a sample every interval, printed as one line, and the baseline it is
//! judged against (the first sample after the warm-up).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::printer::Printer;
use super::probe::Sample;
use super::tally::{Counts, Tally};

/// The samples so far, as much of them as the verdict needs (no growing history).
#[derive(Debug)]
pub struct Series {
    started: Instant,
    warmup: Duration,
    tally: Arc<Tally>,
    printer: Printer,
    baseline: Option<Sample>,
    failures_printed: usize,
}

/// How much the process grew from the baseline to the end.
#[derive(Clone, Copy, Debug)]
pub struct Growth {
    pub rss_kib: i64,
    pub heap_kib: i64,
    pub heap_blocks: i64,
    pub fds: i64,
    pub greenlets: i64,
}

impl Series {
    /// A series whose baseline is the first sample at least `warmup` after `started`.
    pub fn new(started: Instant, warmup: Duration, tally: Arc<Tally>) -> Series {
        Series {
            started,
            warmup,
            tally,
            printer: Printer::start(),
            baseline: None,
            failures_printed: 0,
        }
    }

    /// Measures, prints the line (and any new failure messages), and keeps the sample if
    /// it is the baseline.
    pub fn sample(&mut self) -> Sample {
        let sample = Sample::take(self.started);
        let counts = self.tally.counts();
        self.printer.print(line(&sample, &counts));
        self.print_new_failures();
        if self.baseline.is_none() && sample.elapsed >= self.warmup {
            self.baseline = Some(sample);
        }
        sample
    }

    /// Prints the failure messages not printed yet.
    fn print_new_failures(&mut self) {
        for message in self.tally.messages_from(self.failures_printed) {
            self.failures_printed += 1;
            self.printer.print(format!("  failure: {message}"));
        }
    }

    /// Growth from the baseline to `end` (zero if no sample came after the warm-up).
    pub fn growth(&self, end: &Sample) -> Growth {
        let base = self.baseline.unwrap_or(*end);
        Growth {
            rss_kib: end.rss_kib as i64 - base.rss_kib as i64,
            heap_kib: end.heap_kib - base.heap_kib,
            heap_blocks: end.heap_blocks - base.heap_blocks,
            fds: end.fds as i64 - base.fds as i64,
            greenlets: end.greenlets as i64 - base.greenlets as i64,
        }
    }

    /// The baseline, if one was taken.
    pub fn baseline(&self) -> Option<Sample> {
        self.baseline
    }

    /// Prints the failures not printed yet and what is still queued; returns how many
    /// lines stdout could not take in time.
    pub fn finish(mut self) -> u64 {
        self.print_new_failures();
        self.printer.finish()
    }
}

/// One line of the series.
pub fn line(sample: &Sample, c: &Counts) -> String {
    format!(
        "[{:>4}s] rss {:>6} KiB  heap {:>5} KiB in {:>5} blocks  fds {:>4}  threads {}  greenlets {:>4} | echo {} http {} refused {} \
         resets {} slow-closed {} | pool ok {} died {} unexpected {} | failures {}",
        sample.elapsed.as_secs(),
        sample.rss_kib,
        sample.heap_kib,
        sample.heap_blocks,
        sample.fds,
        sample.threads,
        sample.greenlets,
        c.echoed,
        c.http_ok,
        c.refused,
        c.resets,
        c.slow_closed,
        c.pool_ok,
        c.pool_died,
        c.pool_unexpected,
        c.failures,
    )
}
