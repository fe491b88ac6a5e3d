//! `lnst-ctl`: runs Rhai recipes against lnst agents.
