//! The run log (`controller.log`): recipe print/debug lines and run
//! events, buffered until the run directory exists; echoed to stderr with
//! -v. Every stage of [`super`] writes to it.

use std::cell::RefCell;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use crate::recipe::engine::LogLine;

/// One run's log. Shared by the stages (and the recipe's `print`) as an
/// `Rc<RefCell<..>>`: a run lives on one thread.
pub struct RunLog {
    file: Option<fs::File>,
    buf: Vec<String>,
    echo: bool,
    t0: Instant,
    recipe: String,
}

/// The shared handle the stages pass around.
pub type Log = Rc<RefCell<RunLog>>;

impl RunLog {
    /// A log for `recipe` (its file name), timed from `t0`.
    pub fn new(recipe: &str, echo: bool, t0: Instant) -> Log {
        Rc::new(RefCell::new(RunLog {
            file: None,
            buf: Vec::new(),
            echo,
            t0,
            recipe: recipe.to_string(),
        }))
    }

    /// Appends a line, stamped with the seconds since the run started.
    pub fn line(&mut self, s: String) {
        let s = format!("[{:8.3}] {s}", self.t0.elapsed().as_secs_f64());
        if self.echo {
            eprintln!("{s}");
        }
        match &mut self.file {
            Some(f) => {
                let _ = writeln!(f, "{s}");
            }
            None => self.buf.push(s),
        }
    }

    /// From now on lines go to `path`; the buffered ones first.
    pub fn attach(&mut self, path: &Path) {
        if let Ok(mut f) = fs::File::create(path) {
            for l in self.buf.drain(..) {
                let _ = writeln!(f, "{l}");
            }
            self.file = Some(f);
        }
    }
}

/// The recipe's `print`/`debug` sink, writing `FILE:LINE: text` to `log`.
pub fn recipe_sink(log: &Log) -> Rc<dyn Fn(LogLine)> {
    let l2 = Rc::clone(log);
    Rc::new(move |l: LogLine| {
        let mut lg = l2.borrow_mut();
        // A module's lines carry the module's file (recipe `import`).
        let file = l.file.unwrap_or_else(|| lg.recipe.clone());
        let at = l.line.map(|n| format!("{file}:{n}")).unwrap_or(file);
        lg.line(format!(
            "{at}: {}{}",
            if l.debug { "debug: " } else { "" },
            l.text
        ));
    })
}
