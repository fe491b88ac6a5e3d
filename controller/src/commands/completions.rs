//! `lnst-ctl completions bash|zsh|fish` and `lnst-ctl man`: shell
//! completion scripts and man pages generated from the same clap
//! definitions as `--help` (clap_complete, clap_mangen), so they never
//! drift from the command line. Recipe arguments complete as file paths;
//! in bash, the words after `--` of `run` and `validate` complete as the
//! recipe's param names (`NAME=`), which the script asks the hidden
//! `lnst-ctl __params RECIPE` for. clap_complete's static zsh and fish
//! scripts have no hook for that (its dynamic completion is behind an
//! unstable feature), so there the params are not completed.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use super::Cli;
use crate::exit::{ExitCode, Failure};

/// The shells `completions` writes for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: Shell) -> Result<ExitCode, Failure> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    let s = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(s, &mut cmd, "lnst-ctl", &mut out);
    if let Shell::Bash = shell {
        out = fix_bash(&out);
        out.extend_from_slice(BASH_PARAMS.as_bytes());
    }
    write_stdout(&out)
}

/// Appended to the bash script: after `--` on a `run` or `validate` line
/// whose recipe (a `.rhai` word) is given, complete the recipe's params;
/// everything else is clap's.
const BASH_PARAMS: &str = r#"
# lnst-ctl: recipe params after `--` (run|validate RECIPE.rhai ... -- NAME=VALUE).
_lnst__ctl_params() {
    local i sub= recipe= dd=
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            --) dd=1 ;;
            run|validate) [ -z "$sub" ] && sub=${COMP_WORDS[i]} ;;
            *.rhai) [ -n "$sub" ] && [ -z "$dd" ] && [ -z "$recipe" ] && recipe=${COMP_WORDS[i]} ;;
        esac
    done
    if [ -n "$dd" ] && [ -n "$recipe" ]; then
        local names
        names=$("${COMP_WORDS[0]}" __params "$recipe" 2>/dev/null)
        COMPREPLY=($(compgen -W "$names" -- "${COMP_WORDS[COMP_CWORD]}"))
        compopt -o nospace 2>/dev/null
        return 0
    fi
    _lnst__ctl "$@"
}
complete -F _lnst__ctl_params -o nosort -o bashdefault -o default lnst-ctl
"#;

/// `lnst-ctl __params RECIPE`: `NAME=` for each param the recipe
/// declares. Errors go to stderr (the completion script drops them).
pub fn params(recipe: &Path) -> Result<ExitCode, Failure> {
    let loaded = crate::recipe::load(
        recipe,
        &Default::default(),
        std::rc::Rc::new(|_| {}),
        crate::recipe::Cancel::new(),
    )
    .map_err(|e| Failure::new(ExitCode::Usage, anyhow::Error::from(e)))?;
    let mut out = String::new();
    for p in &loaded.declared.params {
        out.push_str(&p.name);
        out.push_str("=\n");
    }
    write_stdout(out.as_bytes())
}

/// `lnst-ctl man`: the page `lnst-ctl(1)` on stdout, or with `dir` one
/// page per command (`lnst-ctl.1`, `lnst-ctl-run.1`, ..) written there.
pub fn man(dir: Option<&Path>) -> Result<ExitCode, Failure> {
    let cmd = Cli::command();
    let Some(dir) = dir else {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut out)
            .map_err(|e| Failure::from(anyhow::anyhow!("cannot render the man page: {e}")))?;
        return write_stdout(&out);
    };
    let written = write_pages(cmd, dir)
        .with_context(|| format!("cannot write man pages to {}", dir.display()))
        .map_err(|e| Failure::new(ExitCode::Usage, e))?;
    for p in written {
        println!("{p}");
    }
    Ok(ExitCode::Pass)
}

/// One page for the command and one for each subcommand, recursively
/// (`lnst-ctl-pool-check.1`); returns the paths written.
fn write_pages(cmd: clap::Command, dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut todo = vec![(String::from("lnst-ctl"), cmd)];
    while let Some((name, cmd)) = todo.pop() {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let n = format!("{name}-{}", sub.get_name());
            todo.push((n.clone(), sub.clone().name(n.clone())));
        }
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.clone().name(name.clone())).render(&mut out)?;
        std::fs::write(&path, out)?;
        written.push(path.display().to_string());
    }
    written.sort();
    Ok(written)
}

/// clap_complete's bash script spells the state of a subcommand of a
/// hyphenated binary two ways (`lnst__ctl__subcmd__run` in the loop,
/// `lnst__subcmd__ctl__subcmd__run` in the case arms), so nothing after
/// the subcommand completes: clap-rs/clap#6421, open at 4.6.12. Spell
/// the arms as the loop does.
fn fix_bash(script: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(script)
        .replace("lnst__subcmd__ctl", "lnst__ctl")
        .into_bytes()
}

fn write_stdout(bytes: &[u8]) -> Result<ExitCode, Failure> {
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::from(
            anyhow::anyhow!("cannot write to stdout: {e}"),
        )),
        _ => Ok(ExitCode::Pass),
    }
}
