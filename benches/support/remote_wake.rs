//! The cross-thread wake round trip, shared by the benches that report it (`hub`) or
//! compare against it in the same run (`block_on`): a plain thread wakes the parked main
//! code through a `RemoteWaker` (eventfd write, epoll wake, drain).

use criterion::Bencher;
use verdant::hub::{RemoteWaker, park};

/// Measures one round trip per iteration: send a waker to the worker, park until woken.
pub fn round_trip(b: &mut Bencher<'_>) {
    let (to_worker, from_hub) = std::sync::mpsc::channel::<RemoteWaker>();
    let worker = std::thread::spawn(move || {
        for waker in from_hub {
            waker.wake().unwrap();
        }
    });
    b.iter(|| {
        to_worker.send(RemoteWaker::new(park::waker())).unwrap();
        park::park(&"the worker thread");
    });
    drop(to_worker);
    worker.join().unwrap();
}
