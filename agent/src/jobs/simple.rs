//! When a job's command needs no shell: a *simple command* (plain words, no
//! shell syntax, not a shell builtin) is exec'd directly, the way GNU make
//! runs such recipe lines, instead of through `sh -c`.
//!
//! For such a command the shell would only split the words, look the first
//! one up in `PATH`, export `PWD` and exec it (dash and bash exec the last
//! command of `-c` in place of themselves), so the job's process, its
//! arguments, its environment and its exit are the same either way; only
//! the shell's own start (~55 µs of the 600–900 µs a `true` job takes on this
//! VM) is saved. Anything the shell would do differently goes through it
//! as before:
//!
//! - any character outside [`PLAIN`] (quotes, `$`, globs, `~`, `#`,
//!   redirections, `;`, `|`, `&`, newlines, backslashes, non-ASCII);
//! - a first word that is a shell builtin or reserved word
//!   ([`SHELL_WORDS`]: `cd`, `echo`, `exec`, `if`, ...) or an assignment
//!   (`A=1 cmd`);
//! - a job with a working directory of its own or a `PWD` in its
//!   environment (the shell would work out `PWD` from them), no `PATH`, or
//!   one of more than 64 directories (a request may carry 128 KiB of
//!   colons: no allocation grows with them);
//! - a command word not found on `PATH`, or found but refused by `execve`
//!   for any reason but absence (`EACCES`, `ENOEXEC`: a script without
//!   `#!`): then the child execs `sh -c COMMAND` after all, and the shell
//!   gives its own message and exit status (127, 126) as it always did.
//!
//! `true` and `false` are builtins in dash and bash but are exec'd here:
//! `/usr/bin/true` and the builtin have the same effect.
//!
//! Only jobs started by [`super::clone3`] take this path; where the kernel
//! refuses `clone3`, the `posix_spawn` fallback runs every job in the
//! shell.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// The bytes a simple command may hold besides the blanks between words:
/// none has a meaning to `sh` in any position (`=` is checked apart, in
/// the first word).
const PLAIN: &[u8] = b"-_./,:+@%=";

/// First words that must run in the shell: POSIX and dash builtins, the
/// bash ones a `/bin/sh` that is bash has, and reserved words (`[`, `{`,
/// `!` and the like never get here: they are not [`PLAIN`]). `true` and
/// `false` are not here (see the module text).
#[rustfmt::skip]
const SHELL_WORDS: &[&str] = &[
    ".", ":", "alias", "bg", "break", "builtin", "caller", "case", "cd", "chdir", "command",
    "compgen", "complete", "continue", "declare", "dirs", "disown", "do", "done", "echo", "elif",
    "else", "enable", "esac", "eval", "exec", "exit", "export", "fc", "fg", "fi", "for",
    "function", "getopts", "hash", "help", "history", "if", "in", "jobs", "kill", "let", "local",
    "logout", "mapfile", "popd", "printf", "pushd", "pwd", "read", "readarray", "readonly",
    "return", "select", "set", "shift", "shopt", "source", "suspend", "test", "then", "time",
    "times", "trap", "type", "typeset", "ulimit", "umask", "unalias", "unset", "until", "wait",
    "while",
];

/// The words of `command` if it is a simple command this module may exec
/// directly, `None` if it needs the shell.
pub fn words(command: &str) -> Option<Vec<&str>> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || PLAIN.contains(&b) || b == b' ' || b == b'\t';
    if !command.bytes().all(plain) {
        return None;
    }
    let words: Vec<&str> = command
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .collect();
    let first = *words.first()?;
    if first.contains('=') || SHELL_WORDS.contains(&first) {
        return None;
    }
    Some(words)
}

/// Most directories of `PATH` a direct exec looks through; a longer
/// `PATH` is left to the shell (a request may carry 128 KiB of colons).
const PATH_DIRS_MAX: usize = 64;
/// `PATH_MAX` with its NUL: no longer path can be exec'd.
const PATH_MAX: usize = 4096;

/// Where the shell would look for `program`, in its order: `program`
/// itself if it names a path, else each directory of `path` (an empty one
/// is the working directory). `None`, to leave it to the shell, if that
/// is more than [`PATH_DIRS_MAX`] directories or a path too long to exec.
pub fn candidates(program: &str, path: &OsStr) -> Option<Vec<Vec<u8>>> {
    if program.contains('/') {
        return (program.len() < PATH_MAX).then(|| vec![program.as_bytes().to_vec()]);
    }
    let dirs: Vec<&[u8]> = path.as_bytes().split(|&b| b == b':').collect();
    if dirs.len() > PATH_DIRS_MAX || dirs.iter().any(|d| d.len() + 1 + program.len() >= PATH_MAX) {
        return None;
    }
    let candidates = dirs
        .into_iter()
        .map(|dir| {
            let dir = if dir.is_empty() { &b"."[..] } else { dir };
            let mut p = Vec::with_capacity(dir.len() + 1 + program.len());
            p.extend_from_slice(dir);
            p.push(b'/');
            p.extend_from_slice(program.as_bytes());
            p
        })
        .collect();
    Some(candidates)
}

/// Whether the `NAME=value` entry `kv` has a name the shell can hold as a
/// variable (`[A-Za-z_][A-Za-z0-9_]*`): dash leaves the others
/// (`CARGO_BIN_EXE_lnst-agent=...`) out of what it exports, so a direct
/// exec does too.
pub fn shell_name(kv: &[u8]) -> bool {
    let name = kv.split(|&b| b == b'=').next().unwrap_or_default();
    name.first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// The agent's working directory as the shell would export it in `PWD`:
/// the agent's own `PWD` if it names the working directory, else its
/// physical path (what dash does at start). Worked out once: the agent
/// never changes directory.
pub fn agent_pwd() -> Option<&'static OsStr> {
    static PWD: std::sync::OnceLock<Option<std::ffi::OsString>> = std::sync::OnceLock::new();
    PWD.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        let here = std::fs::metadata(".").ok()?;
        let same = |p: &std::path::Path| {
            std::fs::metadata(p).is_ok_and(|m| m.dev() == here.dev() && m.ino() == here.ino())
        };
        match std::env::var_os("PWD") {
            Some(p) if p.as_bytes().starts_with(b"/") && same(p.as_ref()) => Some(p),
            _ => std::env::current_dir().ok().map(Into::into),
        }
    })
    .as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_are_simple() {
        assert_eq!(words("true"), Some(vec!["true"]));
        assert_eq!(
            words("  ip -j link  show\tdev veth0 "),
            Some(vec!["ip", "-j", "link", "show", "dev", "veth0"])
        );
        assert_eq!(
            words("ethtool -K eth0 gro off"),
            Some(vec!["ethtool", "-K", "eth0", "gro", "off"])
        );
        assert_eq!(
            words("/usr/sbin/sysctl -w net.ipv4.ip_forward=1"),
            Some(vec!["/usr/sbin/sysctl", "-w", "net.ipv4.ip_forward=1"])
        );
        assert_eq!(
            words("ping -c 1 -W 1 fd00::1%veth0 -I 192.0.2.1"),
            Some(vec![
                "ping",
                "-c",
                "1",
                "-W",
                "1",
                "fd00::1%veth0",
                "-I",
                "192.0.2.1"
            ])
        );
    }

    #[test]
    fn shell_syntax_needs_the_shell() {
        for c in [
            "",
            "   ",
            "echo hi",
            "cd /tmp",
            "exec sleep 1",
            "if true",
            "A=1 env",
            "true; false",
            "true && false",
            "sleep 1 &",
            "ls | wc",
            "cat <f",
            "echo >f",
            "ls *",
            "ls ?",
            "ls [a]",
            "ls ~",
            "ls ~root",
            "echo $HOME",
            "echo `id`",
            "echo 'a b'",
            "echo \"a\"",
            "ls a\\ b",
            "true # comment",
            "true\nfalse",
            "ls {a,b}",
            "! true",
            "ls é",
            "kill -9 1",
            "test -e /",
            "[ -e / ]",
            "printf x",
            "pwd",
            "read x",
            "exit 3",
            ". ./f",
            "source f",
        ] {
            assert_eq!(words(c), None, "{c:?}");
        }
    }

    #[test]
    fn shell_names() {
        assert!(shell_name(b"PATH=/bin"));
        assert!(shell_name(b"_x1=a=b"));
        assert!(!shell_name(b"CARGO_BIN_EXE_lnst-agent=/x"));
        assert!(!shell_name(b"1A=x"));
        assert!(!shell_name(b"=x"));
    }

    #[test]
    fn candidates_follow_path_in_order() {
        assert_eq!(
            candidates("ip", OsStr::new("/usr/sbin:/usr/bin")),
            Some(vec![b"/usr/sbin/ip".to_vec(), b"/usr/bin/ip".to_vec()])
        );
        assert_eq!(
            candidates("ip", OsStr::new(":/bin:")),
            Some(vec![
                b"./ip".to_vec(),
                b"/bin/ip".to_vec(),
                b"./ip".to_vec()
            ])
        );
        assert_eq!(
            candidates("./tool", OsStr::new("/usr/bin")),
            Some(vec![b"./tool".to_vec()])
        );
    }

    #[test]
    fn hostile_paths_are_left_to_the_shell() {
        // 128 KiB of colons would be 131 072 candidates.
        assert_eq!(candidates("ip", OsStr::new(&":".repeat(128 * 1024))), None);
        let long = "a".repeat(5000);
        assert_eq!(candidates(&long, OsStr::new("/usr/bin")), None);
        assert_eq!(
            candidates(&format!("/{long}"), OsStr::new("/usr/bin")),
            None
        );
        assert!(candidates("ip", OsStr::new(&":".repeat(63))).is_some());
    }
}
