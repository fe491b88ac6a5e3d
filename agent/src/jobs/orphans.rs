//! Killing job process groups from the undo journal: the `KillJob` entry
//! each job leaves at start lets an agent restarted after `kill -9` (or any
//! replay) end the jobs a previous agent left running.
//!
//! An entry names the group (the leader's pid) and the leader's start time
//! (`/proc/PID/stat` field 22, clock ticks since boot), so a pid reused by
//! an unrelated process is never signalled: while any member of a group
//! lives, the kernel does not hand its id out again, so a group with
//! members but no leader is still ours, and a leader with another start
//! time is someone else. [`kill_groups`] sends TERM to every group of ours
//! still alive, then KILL after [`super::KILL_GRACE`]; entries of jobs that
//! already ended cost one `/proc` scan for the whole batch.

use std::collections::HashMap;
use std::time::Duration;

/// The fields of `/proc/PID/stat` after `comm` (field 3 on).
fn stat_rest(pid: i32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and ')'.
    let rest = s.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// `/proc/PID/stat` field 22 (start time, clock ticks after boot).
pub fn start_time(pid: i32) -> Option<u64> {
    stat_rest(pid)?.get(19)?.parse().ok()
}

/// Live (not zombie) processes per process group.
fn live_members() -> HashMap<i32, usize> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Some(f) = stat_rest(pid) else { continue };
        if f.first().map(String::as_str) == Some("Z") {
            continue;
        }
        if let Some(pgrp) = f.get(2).and_then(|p| p.parse::<i32>().ok()) {
            *out.entry(pgrp).or_default() += 1;
        }
    }
    out
}

fn killpg(pgid: i32, sig: i32) {
    // SAFETY: killpg has no memory-safety preconditions.
    unsafe {
        libc::killpg(pgid, sig);
    }
}

/// `kill -TERM -PGID` for each `(pgid, leader start time)` whose group is
/// still alive and ours, then `kill -KILL -PGID` for those left after
/// [`super::KILL_GRACE`]. Returns one message per group that survived.
pub async fn kill_groups(groups: &[(i32, u64)]) -> Vec<String> {
    survivors(groups)
        .await
        .iter()
        .map(|g| format!("job process group {g} still alive after SIGKILL"))
        .collect()
}

/// [`kill_groups`], returning the process groups that survived.
pub async fn survivors(groups: &[(i32, u64)]) -> Vec<i32> {
    let live = crate::blocking::in_place(live_members);
    let mut targets: Vec<i32> = groups
        .iter()
        .filter(|(pgid, start)| {
            *pgid > 1 && live.contains_key(pgid) && start_time(*pgid).is_none_or(|t| t == *start)
        })
        .map(|(pgid, _)| *pgid)
        .collect();
    targets.sort_unstable();
    targets.dedup();
    if targets.is_empty() {
        return Vec::new();
    }
    for &g in &targets {
        tracing::info!(
            pgid = g,
            "killing a job left by an earlier session or agent"
        );
        killpg(g, libc::SIGTERM);
    }
    let alive = |ts: &[i32]| -> Vec<i32> {
        let live = crate::blocking::in_place(live_members);
        ts.iter()
            .copied()
            .filter(|g| live.contains_key(g))
            .collect()
    };
    let mut left = targets;
    let deadline = tokio::time::Instant::now() + super::KILL_GRACE;
    while !left.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        left = alive(&left);
    }
    for &g in &left {
        killpg(g, libc::SIGKILL);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !left.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        left = alive(&left);
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_read() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some_and(|t| t > 0));
        assert!(start_time(i32::MAX).is_none());
    }

    #[tokio::test]
    async fn kills_a_group_and_spares_a_wrong_start_time() {
        use std::os::unix::process::CommandExt;
        let spawn = || {
            std::process::Command::new("/bin/sh")
                .args(["-c", "sleep 30 & sleep 30; wait"])
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let mut a = spawn();
        let mut b = spawn();
        let (pa, pb) = (a.id() as i32, b.id() as i32);
        std::thread::sleep(Duration::from_millis(100));
        let sa = start_time(pa).unwrap();
        let sb = start_time(pb).unwrap();
        // b's entry carries a wrong start time: a reused pid, not ours.
        let errs = kill_groups(&[(pa, sa), (pb, sb + 1), (i32::MAX - 1, 5)]).await;
        assert!(errs.is_empty(), "{errs:?}");
        let _ = a.wait();
        let live = live_members();
        assert!(!live.contains_key(&pa), "group {pa} survived");
        assert_eq!(live.get(&pb), Some(&3), "group {pb} was touched");
        assert!(kill_groups(&[(pb, sb)]).await.is_empty());
        let _ = b.wait();
        assert!(!live_members().contains_key(&pb));
    }
}
