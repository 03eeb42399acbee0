//! The timeline example: its scenario runs, its trace holds every greenlet's row, and the
//! SVG it draws has a row per greenlet and a slice of each kind the scenario produces.

#![allow(dead_code)] // the example's `main` is included but not called here

#[path = "../examples/timeline.rs"]
mod timeline;

#[test]
fn the_timeline_example_draws_every_greenlet_and_each_kind_of_wait() {
    let dir = std::env::temp_dir().join(format!("verdant-timeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg_path = dir.join("timeline.svg");
    let summary = timeline::run(&svg_path).unwrap();
    assert_eq!(summary.dropped, 0);
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for row in
        ["hub loop", "main code", "server (#1)", "producer (#2)", "consumer (#3)", "hasher (#4)"]
    {
        assert!(svg.contains(&format!(">{row}</text>")), "a row for {row}");
    }
    assert!(svg.contains(">verdant-threadpool-"), "a row for the thread-pool worker");
    // A slice of each kind: running, sleep, I/O, queue, join, and the thread-pool task.
    for (colour, kind) in [
        ("#2e9e44", "running"),
        ("#9db4d8", "sleep"),
        ("#f0a030", "I/O"),
        ("#a77fd0", "queue"),
        ("#46b5b0", "join"),
        ("#d9534f", "thread-pool task"),
    ] {
        assert!(svg.contains(&format!(r#"fill="{colour}"><title>"#)), "a {kind} slice");
    }
    assert!(svg.contains("then: Queue::put() on a full queue"), "the producer waited on the queue");
    assert!(svg.contains("to become readable"), "an I/O wait names its fd");
}
