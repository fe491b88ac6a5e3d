//! Starting a job's shell (or a simple command itself, without the shell:
//! [`super::simple`]) with one `clone3` that does what the fallback needs
//! three steps for: `CLONE_INTO_CGROUP` puts the child in the
//! session's cgroup as it is created (no `echo 0 >cgroup.procs` in the
//! shell, and no instant at which the job is outside its cgroup),
//! `CLONE_CLEAR_SIGHAND` resets every handled signal to its default in the
//! kernel (glibc's `posix_spawn` child asks about and resets each of the
//! 64 signals itself: about 130 `rt_sigaction` calls, ~70 µs on this VM),
//! and `CLONE_PIDFD` hands back the pidfd the supervisor waits on.
//!
//! Like `posix_spawn`, the child shares the agent's memory
//! (`CLONE_VM | CLONE_VFORK`: no page tables are copied, the calling
//! thread sleeps until the child has exec'd) and runs on a stack of its
//! own, so the switch to it is a few lines of assembly (x86_64 only; other
//! architectures use the fallback). Until `execve`, the child only makes
//! system calls on data prepared by the parent: no allocation, no lock.
//! The child gets what `std::process::Command` gives (and what the
//! fallback gives): its own process group, `/dev/null` on stdin, the two
//! pipes on stdout and stderr, `SIGPIPE` back to its default (the Rust
//! runtime ignores it), an empty signal mask.
//!
//! Where the kernel refuses (`ENOSYS`: before 5.3; `EINVAL` or `E2BIG`:
//! flags or argument size it does not know, before 5.7), [`spawn`] says
//! [`Error::Unsupported`] once and for all, and jobs go through
//! `posix_spawn` and the shell's own move into the cgroup
//! ([`super::cgroup::wrap`]).

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why [`spawn`] did not start the child.
#[derive(Debug)]
pub enum Error {
    /// This kernel (or architecture) has no usable `clone3` with these
    /// flags: use the fallback, now and for every later job.
    Unsupported,
    /// The child could not be started (a system call of the parent or the
    /// child's `execve` failed).
    Io(io::Error),
}

/// Set once `clone3` was refused: later jobs go straight to the fallback.
static UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// Whether [`spawn`] is worth trying (no earlier refusal, x86_64).
pub fn usable() -> bool {
    cfg!(target_arch = "x86_64") && !UNSUPPORTED.load(Ordering::Relaxed)
}

/// Everything the child needs, built (and allocated) before the clone.
pub struct Prepared {
    path: CString,
    /// Keeps the strings `argv_ptrs`, `envp_ptrs` and the direct ones
    /// point into (those not in [`agent_env`]).
    _strings: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    /// A simple command's candidate paths ([`super::simple`]), tried in
    /// order with `direct_argv` before `path` and `argv_ptrs` (the shell);
    /// null-terminated, just the null when there are none.
    direct_paths: Vec<*const libc::c_char>,
    direct_argv: Vec<*const libc::c_char>,
}

// SAFETY: the raw pointers point into `_strings`, owned by the same value
// and never modified, or into the process-wide `agent_env`, never freed;
// moving the value between threads moves them along.
unsafe impl Send for Prepared {}

fn cstring(what: &str, s: &[u8]) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{what} contains a NUL byte"))
}

/// `NAME=value`, as `execve` takes it.
fn env_entry(k: &OsStr, v: &OsStr) -> Vec<u8> {
    let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
    kv.extend_from_slice(k.as_bytes());
    kv.push(b'=');
    kv.extend_from_slice(v.as_bytes());
    kv
}

/// One variable of the agent's environment, as `execve` takes it.
struct EnvEntry {
    /// The length of its name.
    name_len: usize,
    /// `NAME=value`.
    kv: CString,
    /// Whether the shell would pass it on ([`super::simple::shell_name`]).
    shell_name: bool,
}

/// The agent's own environment, built once: every job's environment starts
/// from it (36 variables here: building them per job was ~10 µs of each
/// job's start). The agent never changes its environment after it starts.
fn agent_env() -> &'static [EnvEntry] {
    static ENV: std::sync::OnceLock<Vec<EnvEntry>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        std::env::vars_os()
            .filter_map(|(k, v)| {
                let kv = CString::new(env_entry(&k, &v)).ok()?;
                Some(EnvEntry {
                    name_len: k.len(),
                    shell_name: super::simple::shell_name(kv.as_bytes()),
                    kv,
                })
            })
            .collect()
    })
}

impl Prepared {
    /// A job's `sh -c COMMAND`, in `cwd`, with the agent's environment plus
    /// `env` (later entries win). A simple command ([`super::simple`]) is
    /// prepared to be exec'd directly, with `PWD` set as the shell would
    /// set it; the shell stays the fallback.
    pub fn job<'a>(
        command: &str,
        cwd: Option<&str>,
        env: impl IntoIterator<Item = (&'a OsStr, &'a OsStr)>,
    ) -> Result<Prepared, String> {
        let env: Vec<(&OsStr, &OsStr)> = env.into_iter().collect();
        let var = |name: &str| -> Option<&OsStr> {
            match env.iter().rev().find(|(k, _)| *k == OsStr::new(name)) {
                Some((_, v)) => Some(*v),
                None => agent_env().iter().find_map(|e| {
                    let (kv, n) = (e.kv.as_bytes(), e.name_len);
                    (&kv[..n] == name.as_bytes()).then(|| OsStr::from_bytes(&kv[n + 1..]))
                }),
            }
        };
        let own_pwd = cwd.is_some() || env.iter().any(|(k, _)| *k == OsStr::new("PWD"));
        let direct = super::simple::words(command)
            .filter(|_| !own_pwd)
            .and_then(|words| {
                let pwd = super::simple::agent_pwd()?;
                let candidates = super::simple::candidates(words[0], var("PATH")?)?;
                Some((words, pwd, candidates))
            });
        let Some((words, pwd, candidates)) = direct else {
            return Prepared::new("/bin/sh", &["-c", command], cwd, env);
        };
        let env = env.into_iter().chain([(OsStr::new("PWD"), pwd)]);
        // The shell passes on only variables whose names it could hold.
        let mut p = Prepared::build("/bin/sh", &["-c", command], cwd, env, true)?;
        // A CString's bytes stay where they are when the Vec holding it
        // grows: the pointers taken below stay valid.
        let (at, n) = (p._strings.len(), candidates.len());
        for c in candidates {
            p._strings.push(cstring("command", &c)?);
        }
        for w in &words {
            p._strings.push(cstring("command", w.as_bytes())?);
        }
        let ptrs = |s: &[CString]| -> Vec<*const libc::c_char> {
            s.iter()
                .map(|s| s.as_ptr())
                .chain([std::ptr::null()])
                .collect()
        };
        p.direct_paths = ptrs(&p._strings[at..at + n]);
        p.direct_argv = ptrs(&p._strings[at + n..]);
        Ok(p)
    }

    /// `program` with `args` (argv[0] = `program`), in `cwd`, with the
    /// agent's environment plus `env` (later entries win).
    pub fn new<'a>(
        program: &str,
        args: &[&str],
        cwd: Option<&str>,
        env: impl IntoIterator<Item = (&'a OsStr, &'a OsStr)>,
    ) -> Result<Prepared, String> {
        Prepared::build(program, args, cwd, env, false)
    }

    /// [`Prepared::new`]; with `shell_names`, only the variables the shell
    /// would pass on.
    fn build<'a>(
        program: &str,
        args: &[&str],
        cwd: Option<&str>,
        env: impl IntoIterator<Item = (&'a OsStr, &'a OsStr)>,
        shell_names: bool,
    ) -> Result<Prepared, String> {
        let path = cstring("program", program.as_bytes())?;
        let mut strings = Vec::with_capacity(args.len() + 1);
        strings.push(path.clone());
        for a in args {
            strings.push(cstring("command", a.as_bytes())?);
        }
        let argc = strings.len();
        let mut extra: Vec<(&OsStr, &OsStr)> = Vec::new();
        for (k, v) in env {
            if k.as_bytes().contains(&b'=') || k.is_empty() {
                return Err(format!(
                    "environment variable name {:?} is empty or contains '='",
                    k
                ));
            }
            match extra.iter_mut().find(|(ek, _)| *ek == k) {
                Some(slot) => slot.1 = v,
                None => extra.push((k, v)),
            }
        }
        for (k, v) in &extra {
            strings.push(cstring("environment", &env_entry(k, v))?);
        }
        let mut argv_ptrs: Vec<*const libc::c_char> =
            strings[..argc].iter().map(|s| s.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let base = agent_env();
        let mut envp_ptrs: Vec<*const libc::c_char> =
            Vec::with_capacity(base.len() + extra.len() + 1);
        envp_ptrs.extend(
            base.iter()
                .filter(|e| {
                    let name = &e.kv.as_bytes()[..e.name_len];
                    (e.shell_name || !shell_names)
                        && !extra.iter().any(|(k, _)| k.as_bytes() == name)
                })
                .map(|e| e.kv.as_ptr()),
        );
        envp_ptrs.extend(
            strings[argc..]
                .iter()
                .filter(|kv| !shell_names || super::simple::shell_name(kv.as_bytes()))
                .map(|s| s.as_ptr()),
        );
        envp_ptrs.push(std::ptr::null());
        let cwd = cwd.map(|c| cstring("cwd", c.as_bytes())).transpose()?;
        Ok(Prepared {
            path,
            _strings: strings,
            argv_ptrs,
            envp_ptrs,
            cwd,
            direct_paths: vec![std::ptr::null()],
            direct_argv: vec![std::ptr::null()],
        })
    }
}

/// A started child: the leader of its own process group.
pub struct Child {
    pub pid: i32,
    pub pidfd: OwnedFd,
    /// Read ends (non-blocking, close-on-exec) of the child's stdout and
    /// stderr.
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// Our copies of the write ends (close-on-exec). While they are open
    /// the read ends never reach end of file: hold them until the child
    /// has been reaped, so that its exit wakes its supervisor once (the
    /// pidfd) and not a moment earlier too (the pipes hang up as the
    /// exiting child closes its files, before it can be reaped).
    pub writers: [OwnedFd; 2],
}

/// Starts `p` in the cgroup open at `cgroup` (`None`: the agent's own).
/// The calling thread's network namespace is the child's.
pub fn spawn(p: &Prepared, cgroup: Option<RawFd>) -> Result<Child, Error> {
    if !usable() {
        return Err(Error::Unsupported);
    }
    imp::spawn(p, cgroup)
}

/// A pipe whose ends are both close-on-exec and above stderr (so the
/// child's `dup2` onto 0, 1 and 2 never overwrites one it still needs);
/// the read end (first) is non-blocking.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let r = above_stdio(r)?;
    let w = above_stdio(w)?;
    // SAFETY: fcntl on a valid fd.
    if unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((r, w))
}

fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: fcntl on a valid fd; the new fd is ours alone.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: n is a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// `/dev/null` for the children's stdin, opened once (close-on-exec, above
/// stderr).
fn dev_null() -> io::Result<RawFd> {
    static NULL: std::sync::OnceLock<Option<OwnedFd>> = std::sync::OnceLock::new();
    NULL.get_or_init(|| {
        std::fs::File::open("/dev/null")
            .ok()
            .and_then(|f| above_stdio(f.into()).ok())
    })
    .as_ref()
    .map(|f| f.as_raw_fd())
    .ok_or_else(|| io::Error::other("cannot open /dev/null"))
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::*;

    const CLONE_VM: u64 = libc::CLONE_VM as u64;
    const CLONE_VFORK: u64 = libc::CLONE_VFORK as u64;
    const CLONE_PIDFD: u64 = libc::CLONE_PIDFD as u64;
    /// Linux 5.5.
    const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
    /// Linux 5.7.
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

    /// `struct clone_args` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }

    /// What the child reads (and, on failure, writes) in the shared memory.
    #[repr(C)]
    struct ChildArgs {
        /// Tried first with `direct_argv`, as long as each is absent.
        direct_paths: *const *const libc::c_char,
        direct_argv: *const *const libc::c_char,
        path: *const libc::c_char,
        argv: *const *const libc::c_char,
        envp: *const *const libc::c_char,
        cwd: *const libc::c_char,
        fds: [RawFd; 3],
        /// errno of the child's failed step, 0 if it exec'd.
        err: i32,
    }

    /// The child's stack: only system-call wrappers run on it.
    const STACK: usize = 32 * 1024;

    thread_local! {
        /// This thread's child stack, reused from one spawn to the next
        /// (the thread is suspended while a child runs on it).
        static CHILD_STACK: std::cell::Cell<Option<Box<[u128]>>> =
            const { std::cell::Cell::new(None) };
    }

    pub fn spawn(p: &Prepared, cgroup: Option<RawFd>) -> Result<Child, Error> {
        let io = Error::Io;
        let stdin = dev_null().map_err(io)?;
        let (out_r, out_w) = pipe().map_err(io)?;
        let (err_r, err_w) = pipe().map_err(io)?;
        let mut args = ChildArgs {
            direct_paths: p.direct_paths.as_ptr(),
            direct_argv: p.direct_argv.as_ptr(),
            path: p.path.as_ptr(),
            argv: p.argv_ptrs.as_ptr(),
            envp: p.envp_ptrs.as_ptr(),
            cwd: p.cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            fds: [stdin, out_w.as_raw_fd(), err_w.as_raw_fd()],
            err: 0,
        };
        let mut stack = CHILD_STACK
            .take()
            .unwrap_or_else(|| vec![0u128; STACK / 16].into_boxed_slice());
        let mut pidfd: RawFd = -1;
        let mut flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_CLEAR_SIGHAND;
        if cgroup.is_some() {
            flags |= CLONE_INTO_CGROUP;
        }
        let cl = CloneArgs {
            flags,
            pidfd: &mut pidfd as *mut RawFd as u64,
            exit_signal: libc::SIGCHLD as u64,
            stack: stack.as_mut_ptr() as u64,
            stack_size: STACK as u64,
            cgroup: cgroup.unwrap_or(0) as u64,
            ..Default::default()
        };
        let ret: i64;
        // SAFETY: clone3 with CLONE_VM | CLONE_VFORK: this thread is
        // suspended until the child has exec'd or exited, so `args`,
        // `stack` and everything `p` points to stay alive and unmodified
        // for as long as the child uses them. The child returns from the
        // syscall on the top of `stack` (16-byte aligned: a [u128]) and
        // calls `child_main` at once, touching nothing of this frame;
        // `child_main` never returns. In the parent only rax, rcx and r11
        // change (the syscall ABI).
        unsafe {
            std::arch::asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "xor ebp, ebp",
                "mov rdi, r12",
                "call r13",
                "ud2",
                "2:",
                inlateout("rax") libc::SYS_clone3 => ret,
                in("rdi") &cl as *const CloneArgs,
                in("rsi") std::mem::size_of::<CloneArgs>(),
                in("r12") &mut args as *mut ChildArgs,
                in("r13") child_main as extern "C" fn(*mut ChildArgs) -> !,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        // The child has exec'd or exited (CLONE_VFORK): it is done with
        // the stack.
        CHILD_STACK.set(Some(stack));
        if ret < 0 {
            let errno = (-ret) as i32;
            if matches!(errno, libc::ENOSYS | libc::EINVAL | libc::E2BIG) {
                UNSUPPORTED.store(true, Ordering::Relaxed);
                tracing::info!(
                    error = %io::Error::from_raw_os_error(errno),
                    "clone3 with CLONE_INTO_CGROUP refused; jobs start with posix_spawn"
                );
                return Err(Error::Unsupported);
            }
            return Err(Error::Io(io::Error::from_raw_os_error(errno)));
        }
        let pid = ret as i32;
        // SAFETY: the kernel stored a new pidfd (CLONE_PIDFD); ours alone.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        // SAFETY: the child has exec'd or exited (CLONE_VFORK); it wrote
        // `err` before that, if at all.
        let err = unsafe { std::ptr::read_volatile(&args.err) };
        if err != 0 {
            // The child exited (127) without exec'ing: reap it.
            // SAFETY: waitpid on our own child.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            return Err(Error::Io(io::Error::from_raw_os_error(err)));
        }
        Ok(Child {
            pid,
            pidfd,
            stdout: out_r,
            stderr: err_r,
            writers: [out_w, err_w],
        })
    }

    /// The child, on its own stack, in the agent's memory: system calls
    /// only, then `execve`. Every handled signal is at its default already
    /// (`CLONE_CLEAR_SIGHAND`), so no agent handler can run here.
    extern "C" fn child_main(a: *mut ChildArgs) -> ! {
        // SAFETY: `a` points to the parent's ChildArgs, alive while the
        // parent is suspended (CLONE_VFORK); the calls are async-signal-safe
        // libc wrappers on pointers the parent prepared.
        unsafe {
            let a = &mut *a;
            let fail = |a: &mut ChildArgs| -> ! {
                let e = *libc::__errno_location();
                a.err = if e == 0 { libc::EINVAL } else { e };
                libc::_exit(127)
            };
            if libc::setpgid(0, 0) != 0 {
                fail(a);
            }
            for (target, fd) in a.fds.into_iter().enumerate() {
                // Every source fd is above 2, so dup2 never overwrites
                // one still to be copied, and it clears close-on-exec.
                if libc::dup2(fd, target as RawFd) < 0 {
                    fail(a);
                }
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = libc::SIG_DFL;
            if libc::sigaction(libc::SIGPIPE, &sa, std::ptr::null_mut()) != 0 {
                fail(a);
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
                fail(a);
            }
            if !a.cwd.is_null() && libc::chdir(a.cwd) != 0 {
                fail(a);
            }
            // A simple command's candidates: on to the next only while
            // they are absent; any other refusal (a script without `#!`,
            // no permission) is the shell's to handle and report.
            let mut c = a.direct_paths;
            while !(*c).is_null() {
                libc::execve(*c, a.direct_argv, a.envp);
                if !matches!(*libc::__errno_location(), libc::ENOENT | libc::ENOTDIR) {
                    break;
                }
                c = c.add(1);
            }
            libc::execve(a.path, a.argv, a.envp);
            fail(a)
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use super::*;

    pub fn spawn(_: &Prepared, _: Option<RawFd>) -> Result<Child, Error> {
        UNSUPPORTED.store(true, Ordering::Relaxed);
        Err(Error::Unsupported)
    }
}

/// `CLOCK_BOOTTIME` now, in clock ticks (`/proc/PID/stat`'s unit), if a
/// tick is a whole number of nanoseconds.
fn boot_ticks() -> Option<u64> {
    static NS_PER_TICK: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let per = (*NS_PER_TICK.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        (hz > 0 && 1_000_000_000 % hz == 0).then(|| 1_000_000_000 / hz as u64)
    }))?;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime with a valid pointer (vDSO, no system call).
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    Some((ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64) / per)
}

/// Runs `spawn` (which creates one process) and returns its result with
/// the new process's start time (`/proc/PID/stat` field 22) when it can be
/// known without reading `/proc`: the kernel stamps a process with
/// `CLOCK_BOOTTIME` as it creates it, and `/proc` shows that stamp in
/// clock ticks (10 ms), so if the clock reads the same tick just before and
/// just after the spawn, that tick is the start time. `None` when the
/// spawn straddled a tick (about one job in 30 here): read `/proc` then.
pub fn timed<T>(spawn: impl FnOnce() -> T) -> (T, Option<u64>) {
    let before = boot_ticks();
    let r = spawn();
    let after = boot_ticks();
    let known = match (before, after) {
        (Some(b), Some(a)) if a == b => Some(b),
        _ => None,
    };
    (r, known)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(cmd: &str) -> Prepared {
        Prepared::new("/bin/sh", &["-c", cmd], None, std::iter::empty()).unwrap()
    }

    fn read_all(fd: &OwnedFd) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: read into a valid buffer.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            match n {
                0 => return out,
                n if n > 0 => out.extend_from_slice(&buf[..n as usize]),
                _ if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                _ => return out,
            }
        }
    }

    fn reap(pid: i32) -> i32 {
        let mut st = 0;
        // SAFETY: waitpid on our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
        st
    }

    #[test]
    fn child_gets_pipes_group_env_and_default_sigpipe() {
        if !usable() {
            eprintln!("SKIP: no clone3 on this architecture");
            return;
        }
        let p = Prepared::new(
            "/bin/sh",
            &[
                "-c",
                "echo out; echo err >&2; echo $LNST_T; cut -d' ' -f5 /proc/$$/stat; grep -E '^(SigIgn|SigBlk)' /proc/self/status; read x; echo read=$?",
            ],
            Some("/"),
            [(OsStr::new("LNST_T"), OsStr::new("v=1"))],
        )
        .unwrap();
        let c = match spawn(&p, None) {
            Ok(c) => c,
            Err(Error::Unsupported) => {
                eprintln!("SKIP: this kernel refuses clone3 with these flags");
                return;
            }
            Err(Error::Io(e)) => panic!("{e}"),
        };
        drop(c.writers);
        let out = String::from_utf8(read_all(&c.stdout)).unwrap();
        let err = String::from_utf8(read_all(&c.stderr)).unwrap();
        assert_eq!(reap(c.pid), 0);
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        assert_eq!(lines[0], "out");
        assert_eq!(err, "err\n");
        assert_eq!(lines[1], "v=1");
        assert_eq!(lines[2], c.pid.to_string(), "own process group");
        // The test harness ignores SIGPIPE (Rust runtime); the child must
        // not, and must block nothing. (Signals ignored when the harness
        // was started stay ignored, as with posix_spawn.)
        assert_eq!(lines[3], "SigBlk:\t0000000000000000", "{out}");
        let ign = u64::from_str_radix(lines[4].trim_start_matches("SigIgn:\t"), 16).unwrap();
        assert_eq!(
            ign & (1 << (libc::SIGPIPE - 1)),
            0,
            "SIGPIPE ignored: {out}"
        );
        // stdin is /dev/null: `read` meets EOF.
        assert_eq!(lines[5], "read=1");
    }

    #[test]
    fn exec_failure_is_an_error_and_reaped() {
        if !usable() {
            eprintln!("SKIP: no clone3 on this architecture");
            return;
        }
        let p = Prepared::new("/nonexistent/lnst", &[], None, std::iter::empty()).unwrap();
        match spawn(&p, None) {
            Err(Error::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT)),
            Err(Error::Unsupported) => eprintln!("SKIP: clone3 refused"),
            Ok(c) => panic!("started {}", c.pid),
        }
        let p =
            Prepared::new("/bin/sh", &[], Some("/nonexistent/dir"), std::iter::empty()).unwrap();
        assert!(matches!(
            spawn(&p, None),
            Err(Error::Io(_)) | Err(Error::Unsupported)
        ));
    }

    #[test]
    fn nul_bytes_are_refused_before_spawning() {
        assert!(Prepared::new("/bin/sh", &["-c", "a\0b"], None, std::iter::empty()).is_err());
        assert!(Prepared::new(
            "/bin/sh",
            &[],
            None,
            [(OsStr::new("K"), OsStr::new("a\0b"))]
        )
        .is_err());
    }

    #[test]
    fn start_time_without_proc_matches_proc() {
        if !usable() {
            eprintln!("SKIP: no clone3 on this architecture");
            return;
        }
        let mut known = 0;
        for _ in 0..50 {
            let (c, t) = timed(|| spawn(&prepared("exit 3"), None));
            let c = match c {
                Ok(c) => c,
                Err(Error::Unsupported) => return eprintln!("SKIP: clone3 refused"),
                Err(Error::Io(e)) => panic!("{e}"),
            };
            // Still a zombie until reaped: its /proc entry is there.
            let from_proc = crate::jobs::orphans::start_time(c.pid);
            let st = reap(c.pid);
            assert_eq!(st >> 8, 3);
            if let Some(t) = t {
                known += 1;
                assert_eq!(Some(t), from_proc);
            }
        }
        assert!(known >= 25, "only {known} of 50 start times known");
    }

    #[test]
    fn prepared_env_overrides_and_adds() {
        let p = Prepared::new(
            "/bin/sh",
            &["-c", "x"],
            None,
            [
                (OsStr::new("PATH"), OsStr::new("/lnst")),
                (OsStr::new("LNST_NEW"), OsStr::new("1")),
            ],
        )
        .unwrap();
        let env: Vec<String> = p.envp_ptrs[..p.envp_ptrs.len() - 1]
            .iter()
            // SAFETY: the pointers point into p's strings.
            .map(|&s| {
                unsafe { std::ffi::CStr::from_ptr(s) }
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
        assert!(env.contains(&"PATH=/lnst".to_string()));
        assert!(env.contains(&"LNST_NEW=1".to_string()));
        assert_eq!(p.argv_ptrs.len(), 4, "/bin/sh -c x NULL");
    }

    /// A directory of files (name, text, mode) under the temp dir, removed
    /// on drop.
    struct Bin(std::path::PathBuf);

    impl Bin {
        fn new(tag: &str, files: &[(&str, &str, u32)]) -> Bin {
            use std::os::unix::fs::PermissionsExt;
            let d = std::env::temp_dir().join(format!("lnst-simple-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            for (name, text, mode) in files {
                let f = d.join(name);
                std::fs::write(&f, text).unwrap();
                std::fs::set_permissions(&f, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
            Bin(d)
        }
    }

    impl Drop for Bin {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Runs `p` to its end: (exit status, stdout, stderr).
    fn run(p: &Prepared) -> Option<(i32, String, String)> {
        let c = match spawn(p, None) {
            Ok(c) => c,
            Err(Error::Unsupported) => return None,
            Err(Error::Io(e)) => panic!("{e}"),
        };
        drop(c.writers);
        let out = String::from_utf8(read_all(&c.stdout)).unwrap();
        let err = String::from_utf8(read_all(&c.stderr)).unwrap();
        Some((reap(c.pid), out, err))
    }

    fn path_env(dirs: &str) -> [(&OsStr, &OsStr); 1] {
        [(OsStr::new("PATH"), OsStr::new(dirs))]
    }

    #[test]
    fn simple_command_runs_without_the_shell() {
        if !usable() {
            return eprintln!("SKIP: no clone3 on this architecture");
        }
        let b = Bin::new(
            "direct",
            &[("lnst-args", "#!/bin/sh\necho \"$*|$PWD\"\n", 0o755)],
        );
        let path = format!("/nonexistent-lnst:{}", b.0.display());
        let mut p = Prepared::job("lnst-args  a=1\t-b ", None, path_env(&path)).unwrap();
        assert_eq!(p.direct_paths.len(), 3, "two candidates and the null");
        assert_eq!(p.direct_argv.len(), 4, "three words and the null");
        // No shell to fall back on: only the direct exec can start it.
        p.path = CString::new("/nonexistent-lnst/sh").unwrap();
        let Some((st, out, err)) = run(&p) else {
            return eprintln!("SKIP: clone3 refused");
        };
        let pwd = super::super::simple::agent_pwd().unwrap().to_string_lossy();
        assert_eq!(
            (st, out, err),
            (0, format!("a=1 -b|{pwd}\n"), String::new())
        );
    }

    #[test]
    fn the_shell_takes_what_direct_exec_cannot() {
        if !usable() {
            return eprintln!("SKIP: no clone3 on this architecture");
        }
        // d1: not executable, and a script without `#!`; d2: the real one.
        let d1 = Bin::new(
            "d1",
            &[
                ("lnst-t", "#!/bin/sh\necho d1\n", 0o644),
                ("lnst-nobang", "echo nobang $((1+1))\n", 0o755),
            ],
        );
        let d2 = Bin::new("d2", &[("lnst-t", "#!/bin/sh\necho d2\n", 0o755)]);
        let path = format!("{}:{}", d1.0.display(), d2.0.display());
        let cases = [
            // EACCES on the first: the shell goes on to the second.
            ("lnst-t", (0, "d2\n", "")),
            // ENOEXEC: the shell runs it as a script.
            ("lnst-nobang", (0, "nobang 2\n", "")),
            // Not found anywhere: the shell's message and 127.
            ("lnst-missing x", (127, "", "lnst-missing: not found")),
        ];
        for (cmd, (code, out, err)) in cases {
            let p = Prepared::job(cmd, None, path_env(&path)).unwrap();
            assert!(p.direct_paths.len() > 1, "{cmd}: prepared for direct exec");
            let Some((st, o, e)) = run(&p) else {
                return eprintln!("SKIP: clone3 refused");
            };
            assert_eq!((st >> 8, o.as_str()), (code, out), "{cmd}");
            assert!(
                e.contains(err) && (err.is_empty() == e.is_empty()),
                "{cmd}: {e}"
            );
        }
    }

    #[test]
    fn shell_jobs_are_not_prepared_for_direct_exec() {
        let direct = |cmd: &str, cwd: Option<&str>, env: &[(&str, &str)]| {
            let env = env.iter().map(|(k, v)| (OsStr::new(*k), OsStr::new(*v)));
            Prepared::job(cmd, cwd, env).unwrap().direct_paths.len() > 1
        };
        assert!(direct("ip link", None, &[("PATH", "/usr/sbin:/usr/bin")]));
        assert!(!direct("ip link | cat", None, &[("PATH", "/usr/bin")]));
        assert!(!direct("echo hi", None, &[("PATH", "/usr/bin")]));
        // The shell works PWD out from a working directory or a PWD given.
        assert!(!direct("ip link", Some("/"), &[("PATH", "/usr/bin")]));
        assert!(!direct(
            "ip link",
            None,
            &[("PATH", "/usr/bin"), ("PWD", "/")]
        ));
    }
}
