//! Integration tests of `lnst-agent`: each test starts the real binary on a
//! unix socket with its own state dir and drives it with the real
//! `AgentClient` (or raw sockets for bad input), checking effects from
//! outside (`/proc`, files, timings). `net` drives the netlink layer
//! directly and `tools` the hidden helper programs (re-running this binary
//! as the tool); they share the one binary to keep build times down.

mod agent {
    pub mod bad_input;
    pub mod busy;
    pub mod defer;
    pub mod devices;
    pub mod events;
    pub mod fuzz;
    pub mod harness;
    pub mod hostile;
    pub mod jobs;
    pub mod loss;
    pub mod native;
    pub mod net;
    pub mod secure;
    pub mod team;
    pub mod tools;
}
