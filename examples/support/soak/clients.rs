//! A client thread: its own hub, and a fixed mix of client greenlets that repeat their
//! scenario, with a short random pause between rounds, until the soak says stop.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use super::rng::Rng;
use super::tally::Tally;
use super::{echo_load, http_abuse, http_load};

/// What a client does, over and over.
#[derive(Clone, Copy, Debug)]
enum Role {
    EchoChurn,
    EchoReset,
    EchoNeverRead,
    HttpKeepAlive,
    HttpReset,
    HttpBadRequest,
    HttpSlowloris,
    HttpSilent,
    HttpIdle,
}

/// How many greenlets of each role one client thread runs.
const MIX: &[(Role, usize)] = &[
    (Role::EchoChurn, 6),
    (Role::EchoReset, 1),
    (Role::EchoNeverRead, 1),
    (Role::HttpKeepAlive, 6),
    (Role::HttpReset, 1),
    (Role::HttpBadRequest, 3),
    (Role::HttpSlowloris, 1),
    (Role::HttpSilent, 1),
    (Role::HttpIdle, 1),
];

/// What a client thread needs to know.
#[derive(Debug)]
pub struct Plan {
    pub echo: SocketAddr,
    pub http: SocketAddr,
    pub tally: Arc<Tally>,
    pub stop: Arc<AtomicBool>,
    pub seed: u64,
    /// The longest pause between two rounds of one client.
    pub pause: Duration,
}

impl Role {
    /// One round of the scenario.
    fn run_once(self, plan: &Plan, rng: &mut Rng) -> Result<(), String> {
        let tally = &plan.tally;
        match self {
            Role::EchoChurn => echo_load::churn(plan.echo, rng, tally),
            Role::EchoReset => echo_load::reset_midway(plan.echo, rng, tally),
            Role::EchoNeverRead => echo_load::never_read(plan.echo, tally),
            Role::HttpKeepAlive => http_load::keep_alive(plan.http, rng, tally),
            Role::HttpReset => http_load::reset_midway(plan.http, rng, tally),
            Role::HttpBadRequest => http_abuse::bad_request(plan.http, rng, tally),
            Role::HttpSlowloris => http_abuse::slowloris(plan.http, tally),
            Role::HttpSilent => http_abuse::silent(plan.http, tally),
            Role::HttpIdle => http_abuse::idle(plan.http, tally),
        }
    }
}

/// The body of a client thread: runs the mix until `plan.stop`, then returns once every
/// client has finished its round.
pub fn run(plan: Plan) {
    let plan = Rc::new(plan);
    let roles = MIX.iter().flat_map(|&(role, n)| std::iter::repeat_n(role, n));
    let clients: Vec<_> = roles
        .enumerate()
        .map(|(i, role)| {
            let plan = plan.clone();
            (role, verdant::spawn(move || client(&plan, role, i as u64)))
        })
        .collect();
    for (role, greenlet) in clients {
        if let Err(err) = greenlet.get() {
            plan.tally.fail(format!("a {role:?} client greenlet died: {err}"));
        }
    }
}

/// Repeats `role` until told to stop.
fn client(plan: &Plan, role: Role, index: u64) {
    let mut rng = Rng::new(plan.seed ^ (index << 40));
    repeat(&plan.stop, &mut rng, plan.pause, |rng| {
        if let Err(message) = role.run_once(plan, rng) {
            plan.tally.fail(format!("{role:?}: {message}"));
        }
    });
}

/// Repeats `step` on this hub until told to stop, pausing up to `pause` between rounds
/// (the clients here; the process-pool callers on the server's hub).
pub fn repeat(stop: &AtomicBool, rng: &mut Rng, pause: Duration, mut step: impl FnMut(&mut Rng)) {
    let pause_ms = pause.as_millis() as usize;
    while !stop.load(Relaxed) {
        step(rng);
        verdant::sleep(Duration::from_millis(rng.between(0, pause_ms) as u64));
    }
}
