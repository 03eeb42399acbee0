//! Deadlock is reported, not hung: the main code's wait fails when nothing can wake it.

use verdant_testutil as util;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use util::panic_message_of;
use verdant_hub::{Builder, sleep, spawn};
use verdant_hub::{park, remote_handle};

#[test]
fn joining_a_greenlet_that_waits_forever_reports_a_deadlock_naming_it() {
    let stuck = Builder::new().name("stuck").spawn(|| park::park(&"nothing at all")).unwrap();
    let msg = panic_message_of(|| stuck.join());
    assert!(msg.contains("deadlock"), "{msg}");
    assert!(msg.contains(&format!("greenlet #{} \"stuck\"", stuck.id())), "{msg}");
    assert!(msg.contains("LoopExit"), "{msg}");
}

#[test]
fn parking_main_with_nothing_to_wake_it_names_the_reason() {
    let msg = panic_message_of(|| park::park(&"the answer to everything"));
    assert!(msg.contains("waits on the answer to everything"), "{msg}");
}

#[test]
fn the_hub_keeps_working_after_a_reported_deadlock() {
    let _ = panic_message_of(|| park::park(&"nothing"));
    let g = spawn(|| {
        sleep(Duration::from_millis(1));
        9
    });
    assert_eq!(g.get(), Ok(9));
}

#[test]
fn a_pending_timer_is_not_a_deadlock() {
    let g = spawn(|| {
        sleep(Duration::from_millis(20));
        "woke"
    });
    assert_eq!(g.get(), Ok("woke"));
}

#[test]
fn outstanding_cross_thread_work_is_not_a_deadlock() {
    let hub = remote_handle();
    let work = hub.begin_work();
    let waker = verdant_hub::RemoteWaker::new(park::waker());
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        waker.wake().unwrap();
        drop(work);
    });
    park::park(&"the other thread");
    t.join().unwrap();
}

#[test]
fn a_greenlet_waiting_for_io_is_not_a_deadlock() {
    let (mut writer, reader) = UnixStream::pair().unwrap();
    let g = spawn(move || verdant_hub::io::wait_readable(&reader, None).is_ok());
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        writer.write_all(b"x").unwrap();
    });
    assert_eq!(g.get(), Ok(true));
    t.join().unwrap();
}

#[test]
fn when_the_last_work_guard_drops_a_waiting_main_is_told_of_the_deadlock() {
    let hub = remote_handle();
    let work = hub.begin_work();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        drop(work); // nothing was posted: main can never be woken now
    });
    let msg = panic_message_of(|| park::park(&"work that never posts"));
    assert!(msg.contains("deadlock"), "{msg}");
    t.join().unwrap();
}
