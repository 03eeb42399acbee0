//! A pool member that overflows its stack is a failed member like one that panicked: the
//! pool frees its place, `join_raising` and `map` report it, the other members go on. Run
//! in a child process, so a regression cannot take the suite down.

use verdant_testutil as util;

use verdant_hub::{GreenletError, configure};
use verdant_pool::{Group, MapError, Pool};

const STACK: usize = 32 * 1024;

fn overflowed(id: u64) -> GreenletError {
    GreenletError::StackOverflow { name: None, id, stack_size: STACK }
}

/// Run in a child process by `pools_see_a_members_overflow_as_a_failure`.
#[test]
fn pool_overflow_child() {
    if !util::is_child_for("pool_overflow_child") {
        return;
    }
    configure(|c| c.stack_size = STACK).unwrap();
    let pool = Pool::new(2);
    let fine = pool.spawn(|| 1);
    let deep = pool.spawn(|| util::recurse_forever(0));
    assert_eq!(pool.join_raising(), Err(overflowed(deep.id())));
    assert_eq!(fine.get(), Ok(1));
    assert!(pool.is_empty(), "the overflowed member left the pool");
    assert_eq!(pool.free_count(), 2, "and freed its place");

    let squares = pool.map(|n: u64| if n == 2 { util::recurse_forever(0) } else { n * n }, 0..4);
    match squares {
        Err(MapError::Task { index: 2, error: GreenletError::StackOverflow { .. } }) => {}
        other => panic!("map reports the overflowed item: {other:?}"),
    }
    assert_eq!(pool.map(|n: u64| n + 1, 0..3), Ok(vec![1, 2, 3]), "the pool goes on");

    let group = Group::new();
    let deep = group.spawn(|| util::recurse_forever(0));
    group.join();
    assert_eq!(deep.error(), Some(overflowed(deep.id())));
    assert!(group.is_empty());
}

#[test]
fn pools_see_a_members_overflow_as_a_failure() {
    util::assert_test_passes_in_child("pool_overflow_child");
}
