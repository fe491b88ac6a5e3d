//! Stage 6, cleanup: the lab torn down (agents stopped, namespaces, guests
//! and links removed), then the reservation released. Each session was
//! already ended by [`super::test`]; this runs on every path once the lab
//! exists, and keeps going past errors, returning them all.

use super::log::Log;
use super::place::Place;
use super::reserve::Reservation;

/// What the lab was, for the report, and the teardown's errors.
pub struct CleanedUp {
    /// The lab's run id (namespaces `lnst-<id>-<host>`).
    pub lab: Option<String>,
    /// Milliseconds the lab took to build.
    pub lab_ms: Option<f64>,
    pub errors: Vec<String>,
}

/// Tears the lab down, then releases the machines.
pub fn cleanup(place: &mut Place, reservation: Reservation, log: &Log) -> CleanedUp {
    let lab = place.lab.as_ref().map(|l| l.runid().to_string());
    let lab_ms = place
        .lab
        .as_ref()
        .map(|l| l.build_time().as_secs_f64() * 1e3);
    let mut errors = Vec::new();
    if let Some(mut l) = place.lab.take() {
        errors.extend(l.teardown());
    }
    log.borrow_mut().line("lab torn down".to_string());
    release(reservation, log);
    CleanedUp {
        lab,
        lab_ms,
        errors,
    }
}

/// Gives the reserved machines back (the agents have undone the run).
pub fn release(reservation: Reservation, log: &Log) {
    if let Some(held) = &reservation.local {
        log.borrow_mut().line(format!(
            "released pool machines {}",
            held.machines().join(", ")
        ));
    }
    if let Some(held) = reservation.shared {
        let (id, ms) = (held.id, held.machines.join(", "));
        match held.release() {
            Ok(()) => log
                .borrow_mut()
                .line(format!("released reservation #{id} ({ms})")),
            Err(e) => {
                let msg = format!(
                    "could not release reservation #{id} ({ms}): {e}; its lease expires by itself"
                );
                eprintln!("lnst-ctl: {msg}");
                log.borrow_mut().line(msg);
            }
        }
    }
}
