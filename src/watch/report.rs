//! The watch's part of every summary: one line per metric (worst value, thresholds, verdict,
//! samples), the warnings, the sources that gave no data, the workers' last figures, and how
//! the watch ended. Text for the terminal and Slack, a table for markdown.

use super::decide::{Level, Track};
use super::sample::HostSample;
use super::{Ending, Report};
use crate::config::watch::Watch;

/// At most this many distinct source notes are kept.
const MAX_NOTES: usize = 10;

pub(super) fn empty(w: &Watch) -> Report {
    Report {
        planned_seconds: w.duration.as_secs(),
        watched_seconds: 0,
        samples: 0,
        metrics: Vec::new(),
        warnings: Vec::new(),
        notes: Vec::new(),
        workers: Vec::new(),
        ending: Ending::Passed,
    }
}

/// Drops metrics that never had a source (no Prometheus, no host facts) from the report.
pub(super) fn finish(r: &mut Report) {
    r.metrics
        .retain(|t| t.inconclusive < t.samples || t.metric == "error_rate" || t.metric == "p95");
}

pub(super) fn note(r: &mut Report, n: &str) {
    if r.notes.len() < MAX_NOTES && !r.notes.iter().any(|x| x == n) {
        crate::ui::warn(&format!("watch: {n}"));
        r.notes.push(n.to_string());
    }
}

/// The host's line replaced by its latest PM2 figures.
pub(super) fn workers(lines: &[String], host: &str, s: &HostSample) -> Vec<String> {
    let mut out: Vec<String> = lines
        .iter()
        .filter(|l| !l.starts_with(&format!("{host}:")))
        .cloned()
        .collect();
    if let Some(w) = &s.workers {
        let each: Vec<String> = w
            .iter()
            .map(|w| {
                format!(
                    "{}#{} {} {} MB {} % cpu, {} restarts",
                    w.name,
                    w.id,
                    w.status,
                    w.memory / 1_048_576,
                    w.cpu,
                    w.restarts
                )
            })
            .collect();
        out.push(format!("{host}: {}", each.join("; ")));
    }
    out
}

fn verdict(t: &Track) -> &'static str {
    match t.verdict {
        Level::Inconclusive => "inconclusive",
        Level::Ok => "ok",
        Level::Warning => "warning",
        Level::Critical | Level::Immediate => "critical",
    }
}

fn thresholds(t: &Track) -> String {
    let mut s = format!(
        "warning {}, critical {}",
        t.unit.show(t.levels.warning),
        t.unit.show(t.levels.critical)
    );
    if let Some(i) = t.levels.immediate {
        s.push_str(&format!(", immediate {}", t.unit.show(i)));
    }
    s
}

fn worst(t: &Track) -> String {
    t.worst.map_or("no data".to_string(), |v| t.unit.show(v))
}

impl Report {
    /// One line saying how the watch ended.
    pub fn headline(&self) -> String {
        let watched = crate::ui::format_duration(std::time::Duration::from_secs(self.watched_seconds));
        let planned = crate::ui::format_duration(std::time::Duration::from_secs(self.planned_seconds));
        match &self.ending {
            Ending::Passed => format!("watch passed: {watched} watched, {} sample(s)", self.samples),
            Ending::RolledBack(why) => format!("watch breached after {watched} ({why}): rolled back"),
            Ending::CutShort => format!(
                "watch cut short by a signal after {watched} of {planned} ({} sample(s)); the release stays",
                self.samples
            ),
        }
    }

    /// Plain lines: the headline, one per metric, warnings, notes and workers.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![self.headline()];
        for t in &self.metrics {
            out.push(format!(
                "  {}: worst {} ({}) — {}, {} sample(s), {} inconclusive",
                t.metric,
                worst(t),
                thresholds(t),
                verdict(t),
                t.samples,
                t.inconclusive
            ));
        }
        out.extend(self.warnings.iter().map(|w| format!("  warning: {w}")));
        out.extend(self.notes.iter().map(|n| format!("  no data: {n}")));
        out.extend(self.workers.iter().map(|w| format!("  workers {w}")));
        out
    }

    /// A markdown section: the headline, then a table of the metrics.
    pub fn markdown(&self) -> String {
        let mut s = format!("### Watch\n\n{}\n\n", self.headline());
        s.push_str("| Metric | Worst | Thresholds | Verdict | Samples |\n|---|---|---|---|---|\n");
        for t in &self.metrics {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} ({} inconclusive) |\n",
                t.metric,
                worst(t),
                thresholds(t),
                verdict(t),
                t.samples,
                t.inconclusive
            ));
        }
        for l in self
            .warnings
            .iter()
            .map(|w| format!("warning: {w}"))
            .chain(self.notes.iter().map(|n| format!("no data: {n}")))
        {
            s.push_str(&format!("\n- {}", l.replace('|', "\\|").replace('\n', " ")));
        }
        s.push('\n');
        s
    }
}
