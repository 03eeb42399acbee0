//! Load for the process pool: `apply` and `map` calls whose values are checked, and tasks
//! that kill their own worker (`abort`), which must fail with `WorkerDied` — exactly
//! those, while every other task still gets its value.
//!
//! The pool is `!Send` and belongs to the server's hub, so its callers are greenlets
//! there, as a server's handlers would be.

use std::ops::Range;

use verdant::processpool::{GetError, MapError, ProcessPool, TaskError};

use super::rng::Rng;
use super::tally::Tally;
use super::wire::HANG_GUARD;

/// The item that makes [`square_or_crash`] crash its worker.
const POISON: u64 = u64::MAX;

/// Items per `map`, at most.
const MAX_ITEMS: usize = 200;

// ---- What the workers run -------------------------------------------------------------

/// A checksum the caller can recompute.
fn checksum(values: Vec<u64>) -> u64 {
    values.iter().fold(17, |sum, v| sum.wrapping_mul(31).wrapping_add(*v))
}

/// `x²`, except that [`POISON`] kills the worker.
fn square_or_crash(x: u64) -> u64 {
    if x == POISON {
        crash(());
    }
    x * x
}

/// Kills the worker process the way a bug in native code would. No core file: a soak
/// crashes workers thousands of times.
fn crash(_: ()) -> u64 {
    let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: setrlimit reads a valid rlimit; lowering this process's own limit is allowed.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
    std::process::abort()
}

// ---- The calls ------------------------------------------------------------------------

/// One random call on `pool`, its outcome checked and counted. About one call in six
/// crashes a worker.
pub fn one_call(pool: &ProcessPool, rng: &mut Rng, tally: &Tally) {
    match rng.between(0, 11) {
        0..=4 => apply(pool, rng, tally),
        5..=9 => map(pool, rng, tally),
        10 => batch_with_a_crash(pool, rng, tally),
        _ => map_with_a_crash(pool, rng, tally),
    }
}

fn random_values(rng: &mut Rng, max: usize) -> Vec<u64> {
    (0..rng.between(0, max)).map(|_| rng.next_u64() >> 32).collect()
}

fn apply(pool: &ProcessPool, rng: &mut Rng, tally: &Tally) {
    let values = random_values(rng, 64);
    let want = checksum(values.clone());
    match pool.apply(checksum, values) {
        Ok(got) if got == want => Tally::bump(&tally.pool_ok),
        other => tally.pool_surprise(format!("pool: apply gave {other:?}, not Ok({want})")),
    }
}

fn map(pool: &ProcessPool, rng: &mut Rng, tally: &Tally) {
    let items = random_values(rng, MAX_ITEMS);
    let want: Vec<u64> = items.iter().map(|x| x * x).collect();
    let chunksize = rng.between(1, 16);
    match pool.map(square_or_crash, items, Some(chunksize)) {
        Ok(got) if got == want => Tally::bump(&tally.pool_ok),
        Ok(_) => tally.pool_surprise("pool: map gave wrong values".to_string()),
        Err(err) => tally.pool_surprise(format!("pool: map failed: {err}")),
    }
}

/// 2 to 6 `apply_async` calls at once, one of which crashes its worker.
fn batch_with_a_crash(pool: &ProcessPool, rng: &mut Rng, tally: &Tally) {
    let tasks = rng.between(2, 6);
    let crasher = rng.between(0, tasks - 1);
    let calls: Vec<_> = (0..tasks)
        .map(|i| {
            let values = random_values(rng, 64);
            let want = checksum(values.clone());
            let result = if i == crasher {
                pool.apply_async(crash, ())
            } else {
                pool.apply_async(checksum, values)
            };
            (result, want)
        })
        .collect();
    for (i, (result, want)) in calls.into_iter().enumerate() {
        match (i == crasher, result.get(Some(HANG_GUARD))) {
            (false, Ok(got)) if got == want => Tally::bump(&tally.pool_ok),
            (true, Err(GetError::Failed(TaskError::WorkerDied(_)))) => {
                Tally::bump(&tally.pool_died)
            }
            (crashes, outcome) => tally.pool_surprise(format!(
                "pool: apply_async (crashing: {crashes}) gave {outcome:?}, expected {}",
                if crashes { "WorkerDied".to_string() } else { format!("Ok({want})") }
            )),
        }
    }
}

/// A `map` with one poisoned item: exactly the chunk holding it must fail, with
/// `WorkerDied`.
fn map_with_a_crash(pool: &ProcessPool, rng: &mut Rng, tally: &Tally) {
    let mut items = random_values(rng, MAX_ITEMS);
    items.push(rng.next_u64() >> 32);
    let poisoned = rng.between(0, items.len() - 1);
    items[poisoned] = POISON;
    let chunksize = rng.between(1, 16);
    let chunk = chunk_of(poisoned, chunksize, items.len());
    match pool.map(square_or_crash, items, Some(chunksize)) {
        Err(MapError { items, error: TaskError::WorkerDied(_) }) if items == chunk => {
            Tally::bump(&tally.pool_died)
        }
        other => tally.pool_surprise(format!(
            "pool: map with item {poisoned} poisoned (chunks of {chunksize}) gave {:?}, \
             expected WorkerDied for items {chunk:?}",
            other.map(|values| values.len())
        )),
    }
}

/// The positions of the chunk (of `chunksize`, out of `len` items) holding `position`.
fn chunk_of(position: usize, chunksize: usize, len: usize) -> Range<usize> {
    let start = position / chunksize * chunksize;
    start..(start + chunksize).min(len)
}
