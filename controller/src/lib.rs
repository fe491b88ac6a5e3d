//! `lnst-ctl`: runs Rhai recipes against lnst agents.

pub mod keygen;
