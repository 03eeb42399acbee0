//! `verdant::Hubs`: many hubs in one process, results in index order, failures named by
//! index, one hub per CPU for `0`, a thread and a hub of its own per index, pinning.

use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;

use verdant::Hubs;
use verdant::hubs::HubsHandle;

#[test]
fn results_come_back_in_index_order() {
    let results = Hubs::new(4).run(|index| {
        // Greenlets of this hub only: they run while the hub's main code joins them.
        let greenlets: Vec<_> = (0..10u64).map(|n| verdant::spawn(move || n)).collect();
        (index, greenlets.iter().map(|g| g.get().unwrap()).sum::<u64>())
    });
    assert_eq!(results, [(0, 45), (1, 45), (2, 45), (3, 45)]);
}

/// Sends on drop, so also while its hub's closure unwinds.
struct SayWhenGone(mpsc::Sender<()>);

impl Drop for SayWhenGone {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// Hub 1 panics; the others finish only after it did (they wait for its unwind).
fn one_hub_panics_first(
    index: usize,
    gone: &Mutex<mpsc::Sender<()>>,
    seen: &Mutex<mpsc::Receiver<()>>,
) -> usize {
    if index == 1 {
        let _guard = SayWhenGone(gone.lock().unwrap().clone());
        panic!("hub one gives up");
    }
    // Every other hub waits for the panic to have unwound (one message each).
    let _ = seen.lock().unwrap().recv();
    index * 10
}

#[test]
fn a_panicking_hub_is_reported_with_its_index_while_the_others_finish() {
    let (tx, rx) = mpsc::channel();
    let (gone, seen) = (Mutex::new(tx), Mutex::new(rx));
    // Hub 1's guard sends one message; three hubs wait: give them two more.
    gone.lock().unwrap().send(()).unwrap();
    gone.lock().unwrap().send(()).unwrap();
    let outcomes = Hubs::new(4).try_run(|index| one_hub_panics_first(index, &gone, &seen));
    assert_eq!(outcomes.len(), 4);
    let failed = outcomes[1].as_ref().unwrap_err();
    assert_eq!(failed.index(), 1);
    assert_eq!(failed.panic().unwrap().message(), "hub one gives up");
    assert_eq!(failed.to_string(), "hub 1 panicked: hub one gives up");
    let values: Vec<Option<usize>> = outcomes.iter().map(|o| o.as_ref().ok().copied()).collect();
    assert_eq!(values, [Some(0), None, Some(20), Some(30)]);
}

#[test]
fn run_panics_after_every_hub_finished_naming_the_failed_one() {
    let finished = std::sync::atomic::AtomicUsize::new(0);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Hubs::new(3).run(|index| {
            if index == 2 {
                panic!("bad input on hub two");
            }
            finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
    }))
    .unwrap_err();
    let message = verdant::panic_message(&*caught);
    assert_eq!(message, "1 of 3 hubs failed: hub 2 panicked: bad input on hub two");
    assert_eq!(finished.into_inner(), 2, "the other hubs ran to the end");
}

#[test]
fn zero_means_one_hub_per_available_cpu() {
    let cpus = thread::available_parallelism().unwrap().get();
    assert_eq!(Hubs::new(0).count(), cpus);
    let indexes = Hubs::new(0).run(|index| index);
    assert_eq!(indexes, (0..cpus).collect::<Vec<_>>());
}

#[test]
fn each_hub_has_its_own_thread_name_index_and_hub() {
    let caller = thread::current().id();
    let seen = Hubs::new(3).name("worker").run(|index| {
        let had_hub = verdant::hub::has_hub(); // a fresh thread: no hub until first use
        verdant::spawn(|| ()).join();
        let me = thread::current();
        (me.id(), me.name().map(str::to_string), verdant::hubs::index(), index, had_hub)
    });
    let threads: HashSet<_> = seen.iter().map(|s| s.0).collect();
    assert_eq!(threads.len(), 3, "one thread per hub");
    assert!(!threads.contains(&caller), "the caller only waits");
    for (i, (_, name, index, given, had_hub)) in seen.into_iter().enumerate() {
        assert_eq!(name.as_deref(), Some(format!("worker-{i}").as_str()));
        assert_eq!((index, given, had_hub), (Some(i), i, false));
    }
    assert_eq!(verdant::hubs::index(), None);
}

/// The CPUs a thread may run on, from `/proc/thread-self/status` (`Cpus_allowed_list`).
fn allowed_cpus_of_this_thread() -> String {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")).unwrap();
    line.split(':').nth(1).unwrap().trim().to_string()
}

/// `"0-1,3"` → `[0, 1, 3]`.
fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

#[test]
fn pinned_hubs_each_run_on_one_allowed_cpu_in_turn() {
    let allowed = parse_cpu_list(&allowed_cpus_of_this_thread());
    let hubs = allowed.len() + 1; // one more than CPUs: the last wraps around to the first
    let pinned = Hubs::new(hubs).pin_to_cores(true).run(|_| allowed_cpus_of_this_thread());
    for (index, cpus) in pinned.iter().enumerate() {
        assert_eq!(parse_cpu_list(cpus), [allowed[index % allowed.len()]], "hub {index}");
    }
    // Pinning a hub does not pin the caller.
    assert_eq!(parse_cpu_list(&allowed_cpus_of_this_thread()), allowed);
}

#[test]
fn the_callers_greenlets_run_while_it_waits_for_the_hubs() {
    let (tx, rx) = mpsc::channel::<&str>();
    // This greenlet runs only if the caller's hub keeps turning during the wait; the hub
    // thread cannot finish before it sent.
    verdant::spawn(move || tx.send("from the caller's hub").unwrap());
    let rx = Mutex::new(rx);
    let got = Hubs::new(1).run(|_| rx.lock().unwrap().recv().unwrap());
    assert_eq!(got, ["from the caller's hub"]);
}

#[test]
fn spawned_hubs_outlive_the_callers_frame_and_join_from_a_plain_thread() {
    static STARTED: OnceLock<Mutex<mpsc::Sender<usize>>> = OnceLock::new();
    let (tx, rx) = mpsc::channel();
    STARTED.set(Mutex::new(tx)).unwrap();
    let handle: HubsHandle<usize> = Hubs::new(2).spawn(|index| {
        STARTED.get().unwrap().lock().unwrap().send(index).unwrap();
        index + 1
    });
    assert_eq!(handle.len(), 2);
    let mut started = [rx.recv().unwrap(), rx.recv().unwrap()];
    started.sort_unstable();
    assert_eq!(started, [0, 1]);
    // A plain thread (no hub) joins natively.
    let outcomes = thread::spawn(move || handle.join()).join().unwrap();
    let values: Vec<usize> = outcomes.into_iter().map(Result::unwrap).collect();
    assert_eq!(values, [1, 2]);
}

#[test]
fn one_thread_pool_serves_greenlets_on_every_hub() {
    let pool = verdant::threadpool::ThreadPool::new(2);
    // Each hub's greenlets wait for the shared pool by parking; every answer comes back
    // to the hub that asked.
    let sums = Hubs::new(3).run(|index| {
        let greenlets: Vec<_> = (0..10u64)
            .map(|n| {
                let pool = pool.clone();
                verdant::spawn(move || pool.apply(move || n * 10 + index as u64))
            })
            .collect();
        greenlets.iter().map(|g| g.get().unwrap()).sum::<u64>()
    });
    assert_eq!(sums, [450, 460, 470]);
}
