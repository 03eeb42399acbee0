//! The parts of the `soak` example: the clients that load the servers and the process
//! pool, what they count, and the series of samples that shows whether anything grows.
//!
//! | module | what it is |
//! |---|---|
//! | `options` | the command line |
//! | `clients` | a client thread: its hub and its mix of client greenlets |
//! | `echo_load` | echo clients: churn with byte-exact checks, resets, a client that never reads |
//! | `http_load` | keep-alive HTTP clients (pipelining, bodies), resets mid-request |
//! | `http_abuse` | bad requests (smuggling, oversized, garbage) and slow clients |
//! | `pool_load` | process-pool calls checked by value, and tasks that crash their worker |
//! | `tally` | the shared counters |
//! | `probe`, `heap`, `report`, `printer` | RSS, live heap, fds and live greenlets; the series; printing off the hub |
//! | `wire`, `rng` | socket helpers for clients; a seedable random generator |

pub mod clients;
pub mod echo_load;
pub mod heap;
pub mod http_abuse;
pub mod http_load;
pub mod options;
pub mod pool_load;
pub mod printer;
pub mod probe;
pub mod report;
pub mod rng;
pub mod tally;
pub mod wire;
