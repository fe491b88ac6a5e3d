//! Integration tests of `lnst-agent`: each test starts the real binary on a
//! unix socket with its own state dir and drives it with the real
//! `AgentClient` (or raw sockets for bad input), checking effects from
//! outside (`/proc`, files, timings).

mod agent {
    pub mod bad_input;
    pub mod devices;
    pub mod events;
    pub mod harness;
    pub mod jobs;
    pub mod loss;
    pub mod secure;
}
