//! What a person watching a run sees: one line per step with its duration, remote output inside
//! collapsible `::group::` blocks in Actions logs, and progress bars (bytes, rate, ETA) on a
//! terminal. Log lines go to stderr on a terminal and to stdout in Actions (where the runner
//! reads workflow commands), so the final summary on stdout stays clean for scripts.
//!
//! In Actions, text that a host (or anything outside tj-deploy) wrote is printed inside a
//! `::stop-commands::<token>` … `::<token>::` fence with a fresh random token, so a host that
//! prints `::add-mask::`, `::error::` or `::stop-commands::` shows text instead of driving the
//! runner. Our own workflow commands are always printed outside any fence.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Terminal,
    Plain,
    Actions,
}

static STYLE: OnceLock<Style> = OnceLock::new();

pub fn init(actions: bool) {
    let style = if actions {
        Style::Actions
    } else if std::io::stderr().is_terminal() {
        Style::Terminal
    } else {
        Style::Plain
    };
    let _ = STYLE.set(style);
}

fn style() -> Style {
    *STYLE.get().unwrap_or(&Style::Plain)
}

pub fn in_actions() -> bool {
    style() == Style::Actions
}

/// The token of the fence that is open right now (Actions only).
static FENCE: Mutex<Option<String>> = Mutex::new(None);

/// A fresh token no host can guess: 128 random bits from the kernel (a hash of the time and
/// the process id only if /dev/urandom is unreadable).
fn fence_token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        use sha2::Digest as _;
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        bytes.copy_from_slice(&sha2::Sha256::digest(seed.as_bytes())[..16]);
    }
    format!("tj-{}", crate::package::hex(&bytes))
}

/// Writes `line` to the Actions log: inside a fence (opened if needed) when `foreign`, else
/// after closing any open fence. Own text that spans lines (a CR counts, the runner splits on
/// it) is treated as foreign: only single-line own text may carry a workflow command.
fn emit_actions(line: &str, foreign: bool) {
    let foreign = foreign || line.contains(['\r', '\n']);
    let mut fence = FENCE.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = std::io::stdout().lock();
    match (foreign, fence.as_ref()) {
        (true, None) => {
            let token = fence_token();
            let _ = writeln!(out, "::stop-commands::{token}");
            *fence = Some(token);
        }
        (false, Some(token)) => {
            let _ = writeln!(out, "::{token}::");
            *fence = None;
        }
        _ => {}
    }
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn emit(line: &str) {
    if style() == Style::Actions {
        emit_actions(line, false);
    } else {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// Closes the open fence, if any: a stretch of host output has ended.
pub fn end_foreign() {
    if style() != Style::Actions {
        return;
    }
    let mut fence = FENCE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(token) = fence.take() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "::{token}::");
        let _ = out.flush();
    }
}

/// Prints text that may carry what a host wrote (the run's summary, with error tails) to
/// stdout; fenced in Actions.
pub fn print_foreign(text: &str) {
    if style() == Style::Actions {
        for line in text.lines() {
            emit_actions(line, true);
        }
        end_foreign();
    } else {
        println!("{text}");
    }
}

/// Escapes a workflow-command message (GitHub's rules: `%`, CR and LF).
fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

pub fn info(msg: &str) {
    emit(msg);
}

pub fn warn(msg: &str) {
    if in_actions() {
        emit(&format!("::warning::{}", escape_data(msg)));
    } else {
        emit(&format!("warning: {msg}"));
    }
}

pub fn error(msg: &str) {
    if in_actions() {
        emit(&format!("::error::{}", escape_data(msg)));
    } else {
        emit(&format!("error: {msg}"));
    }
}

/// Tells the Actions runner to hide `secret` (each line of it) in every later log line.
pub fn mask(secret: &str) {
    if in_actions() {
        for line in secret.lines().map(str::trim).filter(|l| !l.is_empty()) {
            emit(&format!("::add-mask::{}", escape_data(line)));
        }
    }
}

pub fn remote_line(host: &str, line: &str) {
    match style() {
        // Hosts run side by side (`parallel`): every line says whose it is, in the log too.
        Style::Actions => emit_actions(&format!("{host} │ {line}"), true),
        _ => emit(&format!("    {host} │ {line}")),
    }
}

/// The first `n` characters of `s` (a short commit, say), never splitting a character: commits
/// and revisions come from hosts and manifests and need not be ASCII.
pub fn prefix(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// A running step; say how it ended with [`Step::done`] or [`Step::failed`].
pub struct Step {
    name: String,
    started: Instant,
    open: bool,
}

pub fn step(name: &str, detail: &str) -> Step {
    let title = if detail.is_empty() {
        name.to_string()
    } else {
        format!("{name} — {detail}")
    };
    if in_actions() {
        emit(&format!("::group::{}", escape_data(&title)));
    } else {
        emit(&format!("▶ {title}"));
    }
    Step {
        name: name.to_string(),
        started: Instant::now(),
        open: true,
    }
}

impl Step {
    fn close(&mut self, mark: &str, note: &str) -> Duration {
        let took = self.started.elapsed();
        if self.open {
            self.open = false;
            if in_actions() {
                emit("::endgroup::");
            }
            let note = if note.is_empty() {
                String::new()
            } else {
                format!(" — {note}")
            };
            emit(&format!("{mark} {} ({}){note}", self.name, format_duration(took)));
        }
        took
    }
    pub fn done(mut self, note: &str) -> Duration {
        self.close("✓", note)
    }
    pub fn failed(mut self, note: &str) -> Duration {
        self.close("✗", note)
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if self.open {
            self.close("✗", "interrupted");
        }
    }
}

/// A progress bar on a terminal; nothing elsewhere (Actions logs would fill with redraws).
pub fn progress(total: u64, label: &str) -> ProgressBar {
    if style() != Style::Terminal {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let template = format!("    {label} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}} ETA {{eta}}");
    if let Ok(s) = ProgressStyle::with_template(&template) {
        bar.set_style(s.progress_chars("=> "));
    }
    bar
}
