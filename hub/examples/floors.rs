//! The floors under `workloads`: what W1, W2, W3, W5 and W6 cost on corosensei with a
//! scheduler that does nothing but schedule.
//!
//! ```text
//! cargo run --release -p verdant-hub --example floors -- <F1|F2|F3|F5|F6> [N]
//! ```
//!
//! prints `RESULT <id> <value> <unit>` like `workloads` (F1 is W1's floor, and so on).
//! Each is the least any run-queue scheduler built on corosensei's resume/suspend must do
//! for the workload, with none of what makes a hub usable: no interrupts (kill, timeouts),
//! no turns with I/O and timers between them, no states, wakers or epochs, no stack
//! choice, no panics caught, no run information. The distance from a `workloads` figure to
//! its floor is what the hub's bookkeeping costs; the distance from the floor to a peer's
//! figure is what the design (stackful coroutines switched through a scheduler) costs.
//!
//! - F1: two coroutines handing over to each other through a FIFO run queue. Every
//!   hand-over is two stack switches (suspend to the scheduler, resume the other).
//! - F2: spawn `n` tasks returning their index (one allocation each: the body and its
//!   result slot), then run them all to the end on recycled stacks and sum the results.
//! - F3: at most 100 tasks in flight, each mapping one item with one yield inside; results
//!   in order.
//! - F5: a producer and a consumer passing `n` messages through a one-slot queue.
//! - F6: `n` tasks each parking once on a timer heap, then woken in deadline order, each
//!   on its own stack, the stacks' pages faulted in before the clock starts (so: the
//!   scheduling alone). `F6.fault` leaves the faults in: what keeping a stack per parked
//!   task costs in page faults, which verdant's shared stacks avoid by copying.

use std::cell::{Cell, RefCell};
use std::collections::{BinaryHeap, VecDeque};
use std::hint::black_box;
use std::rc::Rc;
use std::time::Instant;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};

type Task = Coroutine<(), (), (), DefaultStack>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: Option<usize> = args.get(1).map(|s| s.parse().expect("N must be a number"));
    match args.first().map(String::as_str).unwrap_or("") {
        "F1" => f1_switch(n.unwrap_or(1_000_000)),
        "F2" => f2_spawn_join(n.unwrap_or(100_000)),
        "F2.reuse" => f2_spawn_join_reusing(n.unwrap_or(100_000)),
        "F3" => f3_bounded_map(n.unwrap_or(100_000)),
        "F5" => f5_queue(n.unwrap_or(1_000_000)),
        "F6" => f6_timers(n.unwrap_or(100_000), true),
        "F6.fault" => f6_timers(n.unwrap_or(100_000), false),
        _ => {
            eprintln!("usage: floors <F1|F2|F3|F5|F6|F6.fault> [N]");
            std::process::exit(2);
        }
    }
}

fn result(id: &str, value: f64, unit: &str) {
    println!("RESULT {id} {value:.1} {unit}");
}

/// The scheduler: resumes tasks in FIFO order, re-queueing those that yielded, until
/// none is left.
fn run(queue: &mut VecDeque<Task>) {
    while let Some(mut task) = queue.pop_front() {
        if let CoroutineResult::Yield(()) = task.resume(()) {
            queue.push_back(task);
        }
    }
}

fn f1_switch(rounds: usize) {
    let ping = || {
        Coroutine::new(move |yielder: &Yielder<(), ()>, ()| {
            for _ in 0..rounds {
                yielder.suspend(());
            }
        })
    };
    let mut queue = VecDeque::from([ping(), ping()]);
    let t = Instant::now();
    run(&mut queue);
    result("F1", t.elapsed().as_nanos() as f64 / (2 * rounds) as f64, "ns/switch");
}

/// A task not started yet: its body and where its result goes, in one allocation.
struct Spawned {
    body: Cell<Option<Box<dyn FnOnce() -> u64>>>,
    result: Cell<Option<u64>>,
}

/// F2's spawns: `count` tasks returning their index, none run yet.
fn spawn_all(count: usize) -> Vec<Rc<Spawned>> {
    (0..count)
        .map(|i| {
            let body: Box<dyn FnOnce() -> u64> = Box::new(move || black_box(i as u64));
            Rc::new(Spawned { body: Cell::new(Some(body)), result: Cell::new(None) })
        })
        .collect()
}

/// F2's joins: reads every result, stops the clock started at `t`, checks the sum.
fn join_all(spawned: &[Rc<Spawned>], t: Instant) -> std::time::Duration {
    let sum: u64 = spawned.iter().map(|task| task.result.get().unwrap()).sum();
    let elapsed = t.elapsed();
    let count = spawned.len() as u64;
    assert_eq!(sum, count * (count - 1) / 2);
    elapsed
}

fn f2_spawn_join(count: usize) {
    let t = Instant::now();
    let spawned = spawn_all(count);
    let mut stacks = vec![DefaultStack::new(256 * 1024).unwrap()];
    for task in &spawned {
        let stack = stacks.pop().unwrap_or_else(|| DefaultStack::new(256 * 1024).unwrap());
        let me = task.clone();
        let mut co = Coroutine::with_stack(stack, move |_: &Yielder<(), ()>, ()| {
            let body = me.body.take().unwrap();
            me.result.set(Some(body()));
        });
        while let CoroutineResult::Yield(()) = co.resume(()) {}
        stacks.push(co.into_stack());
    }
    let elapsed = join_all(&spawned, t);
    result("F2", elapsed.as_nanos() as f64 / count as f64, "ns/spawn+join");
}

/// F2 with each coroutine kept for the next task instead of returning: a worker loop
/// that suspends after each body and is resumed with the next one.
fn f2_spawn_join_reusing(count: usize) {
    let t = Instant::now();
    let spawned = spawn_all(count);
    let next: Rc<Cell<Option<Rc<Spawned>>>> = Rc::new(Cell::new(None));
    let assigned = next.clone();
    let mut worker: Task = Coroutine::new(move |y: &Yielder<(), ()>, ()| {
        loop {
            let task = assigned.take().expect("resumed with a task");
            let body = task.body.take().unwrap();
            task.result.set(Some(body()));
            drop(task);
            y.suspend(());
        }
    });
    for task in &spawned {
        next.set(Some(task.clone()));
        let _ = worker.resume(());
    }
    let elapsed = join_all(&spawned, t);
    result("F2.reuse", elapsed.as_nanos() as f64 / count as f64, "ns/spawn+join");
    std::process::exit(0); // the worker stays suspended: skip its forced unwind
}

fn f3_bounded_map(count: usize) {
    const IN_FLIGHT: usize = 100;
    let results: Rc<RefCell<Vec<u64>>> = Rc::new(RefCell::new(vec![0; count]));
    let mut stacks: Vec<DefaultStack> = Vec::new();
    let mut queue: VecDeque<Task> = VecDeque::new();
    let t = Instant::now();
    let mut next = 0;
    while next < count || !queue.is_empty() {
        while queue.len() < IN_FLIGHT && next < count {
            let stack = stacks.pop().unwrap_or_else(|| DefaultStack::new(256 * 1024).unwrap());
            let (results, item) = (results.clone(), next);
            queue.push_back(Coroutine::with_stack(stack, move |y: &Yielder<(), ()>, ()| {
                y.suspend(());
                results.borrow_mut()[item] = black_box(item as u64) * 2;
            }));
            next += 1;
        }
        let mut task = queue.pop_front().expect("a task in flight");
        if let CoroutineResult::Yield(()) = task.resume(()) {
            queue.push_back(task);
        } else {
            stacks.push(task.into_stack());
        }
    }
    let elapsed = t.elapsed();
    assert_eq!(results.borrow()[count - 1], 2 * (count as u64 - 1));
    result("F3", elapsed.as_nanos() as f64 / count as f64, "ns/item");
}

fn f5_queue(messages: usize) {
    let slot: Rc<Cell<Option<u64>>> = Rc::new(Cell::new(None));
    let received = Rc::new(Cell::new(0u64));
    let producer = {
        let slot = slot.clone();
        Coroutine::new(move |y: &Yielder<(), ()>, ()| {
            for i in 0..messages as u64 {
                while slot.get().is_some() {
                    y.suspend(());
                }
                slot.set(Some(i));
            }
        })
    };
    let consumer = {
        let (slot, received) = (slot.clone(), received.clone());
        Coroutine::new(move |y: &Yielder<(), ()>, ()| {
            for _ in 0..messages {
                let value = loop {
                    match slot.take() {
                        Some(value) => break value,
                        None => y.suspend(()),
                    }
                };
                received.set(received.get() + black_box(value));
            }
        })
    };
    let mut queue = VecDeque::from([producer, consumer]);
    let t = Instant::now();
    run(&mut queue);
    let elapsed = t.elapsed();
    assert_eq!(received.get(), (messages as u64) * (messages as u64 - 1) / 2);
    result("F5", elapsed.as_nanos() as f64 / messages as f64, "ns/message");
}

/// `prefault`: touch the stacks before the clock starts, so the figure is scheduling
/// alone (F6); without, every task's first run faults its stack's top page in (F6.fault).
fn f6_timers(count: usize, prefault: bool) {
    let arena = Arena::new(count);
    if prefault {
        arena.touch_tops();
    }
    let t = Instant::now();
    let mut parked: Vec<Option<Coroutine<(), (), (), Slice>>> = Vec::with_capacity(count);
    let mut heap = BinaryHeap::with_capacity(count);
    for i in 0..count {
        let mut task =
            Coroutine::with_stack(arena.slice(i), |y: &Yielder<(), ()>, ()| y.suspend(()));
        let _ = task.resume(());
        // Deadlines spread over the range, woken nearest first.
        heap.push(std::cmp::Reverse(((i * 7919) % count, i)));
        parked.push(Some(task));
    }
    let mut done = 0;
    while let Some(std::cmp::Reverse((_, i))) = heap.pop() {
        let mut task = parked[i].take().expect("woken once");
        if let CoroutineResult::Return(()) = task.resume(()) {
            done += 1;
        }
    }
    let elapsed = t.elapsed();
    assert_eq!(done, count);
    result(if prefault { "F6" } else { "F6.fault" }, elapsed.as_nanos() as f64 / 1e6, "ms");
}

/// F6's stacks: `count` slices of one anonymous mapping, without guard pages (the floor
/// of "every parked task keeps its own stack": one mapping, no `mprotect`, but each
/// stack's first page is still faulted in when its task first runs).
struct Arena {
    base: *mut u8,
    len: usize,
}

const SLICE: usize = 16 * 1024;

impl Arena {
    fn new(count: usize) -> Arena {
        let len = count * SLICE;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing
        // touches no existing memory.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mapping {len} bytes of stacks");
        Arena { base: base.cast(), len }
    }

    /// Writes the top two pages of every slice (all a parked task of F6 uses).
    fn touch_tops(&self) {
        for i in 0..self.len / SLICE {
            let top = self.slice(i).high;
            for page in [top - 4096, top - 8192] {
                // SAFETY: inside the arena's writable mapping; no coroutine runs yet.
                unsafe { (page as *mut u8).write_volatile(0) };
            }
        }
    }

    fn slice(&self, i: usize) -> Slice {
        assert!((i + 1) * SLICE <= self.len);
        let low = self.base as usize + i * SLICE;
        Slice { low, high: low + SLICE }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; the coroutines on it have all returned.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// One stack of the arena.
struct Slice {
    low: usize,
    high: usize,
}

// SAFETY: `high` and `low` bound a writable range of the arena (page-aligned, so aligned
// to `STACK_ALIGNMENT`) that no other `Slice` overlaps, and the arena outlives every
// coroutine on it (F6 drops them, all returned, before the arena).
unsafe impl corosensei::stack::Stack for Slice {
    fn base(&self) -> corosensei::stack::StackPointer {
        corosensei::stack::StackPointer::new(self.high).expect("non-null")
    }

    fn limit(&self) -> corosensei::stack::StackPointer {
        corosensei::stack::StackPointer::new(self.low).expect("non-null")
    }
}
