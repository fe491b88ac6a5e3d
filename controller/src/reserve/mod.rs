//! Reservations: how a run makes sure no other run uses the pool machines
//! it maps onto.
//!
//! - [`local`]: a lock file per machine on this box (`flock`), so two
//!   `lnst-ctl` here never drive one machine at once; needs no database;
//! - [`pg`]: reservations on a shared PostgreSQL: a queue by priority,
//!   leases, dirty machines, people holding machines.

pub mod local;
pub mod pg;
