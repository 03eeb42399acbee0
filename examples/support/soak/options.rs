//! The soak's command line.

use std::time::Duration;

/// What to run, and for how long.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long the load runs (`--seconds`, 60).
    pub seconds: Duration,
    /// Between two lines of the series (`--interval`, 10 s).
    pub interval: Duration,
    /// The baseline is the first sample at least this far in (`--warmup`, 30 s, at most
    /// half the run).
    pub warmup: Duration,
    /// OS threads running client greenlets (`--client-threads`, 2).
    pub client_threads: usize,
    /// Worker processes of the pool (`--workers`, 2).
    pub workers: usize,
    /// The longest pause of a client between two rounds (`--pause-ms`, 20).
    pub pause: Duration,
    /// `http_hello`'s request timeout (`--request-timeout`, 2 s; also the first-byte
    /// timeout).
    pub request_timeout: Duration,
    /// The idle timeout of both servers (`--idle-timeout`, 3 s).
    pub idle_timeout: Duration,
    /// Seeds every client's random choices (`--seed`; by default from the clock).
    pub seed: u64,
}

pub const USAGE: &str = "usage: soak [--seconds 60] [--interval 10] [--warmup 30] \
    [--client-threads 2] [--workers 2] [--pause-ms 20] [--request-timeout 2] \
    [--idle-timeout 3] [--seed N]";

impl Options {
    /// Parses the arguments (without the program name).
    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut o = Options::default();
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--seconds" => o.seconds = seconds(&flag, &value)?,
                "--interval" => o.interval = seconds(&flag, &value)?,
                "--warmup" => o.warmup = seconds(&flag, &value)?,
                "--client-threads" => o.client_threads = count(&flag, &value)?,
                "--workers" => o.workers = count(&flag, &value)?,
                "--pause-ms" => o.pause = Duration::from_millis(number(&flag, &value)?),
                "--request-timeout" => o.request_timeout = seconds(&flag, &value)?,
                "--idle-timeout" => o.idle_timeout = seconds(&flag, &value)?,
                "--seed" => o.seed = number(&flag, &value)?,
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        o.warmup = o.warmup.min(o.seconds / 2);
        Ok(o)
    }
}

impl Default for Options {
    fn default() -> Options {
        let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        Options {
            seconds: Duration::from_secs(60),
            interval: Duration::from_secs(10),
            warmup: Duration::from_secs(30),
            client_threads: 2,
            workers: 2,
            pause: Duration::from_millis(20),
            request_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(3),
            seed: clock.map_or(1, |d| d.as_nanos() as u64),
        }
    }
}

fn number(flag: &str, value: &str) -> Result<u64, String> {
    value.parse().map_err(|_| format!("{flag} takes a whole number, not {value:?}"))
}

fn count(flag: &str, value: &str) -> Result<usize, String> {
    match number(flag, value)? {
        0 => Err(format!("{flag} must be at least 1")),
        n => Ok(n as usize),
    }
}

fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{flag} takes a positive number of seconds, not {value:?}"))
}
