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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::decide::{self, Judged, Level, Reading, Unit};

    fn report(ending: Ending) -> Report {
        let w = crate::config::watch::parse("w", None, "r", None).unwrap();
        let mut r = empty(&w);
        let j = Judged {
            readings: vec![
                Reading {
                    metric: "error_rate",
                    unit: Unit::Ratio,
                    value: Some(0.01),
                    level: Level::Warning,
                    levels: w.error_rate,
                    host: None,
                    before: None,
                },
                Reading {
                    metric: "prometheus p95",
                    unit: Unit::Seconds,
                    value: None,
                    level: Level::Inconclusive,
                    levels: w.p95,
                    host: None,
                    before: None,
                },
            ],
            ..Judged::default()
        };
        decide::track(&mut r.metrics, &j, 2);
        r.samples = 1;
        r.watched_seconds = 95;
        r.planned_seconds = 900;
        r.ending = ending;
        note(&mut r, "prometheus p95: connection failed");
        r
    }

    #[test]
    fn every_metric_with_its_worst_value_thresholds_verdict_and_samples() {
        let lines = report(Ending::Passed).lines();
        assert_eq!(lines[0], "watch passed: 1m35s watched, 1 sample(s)");
        assert_eq!(
            lines[1],
            "  error_rate: worst 1 % (warning 0.5 %, critical 2 %, immediate 5 %) — warning, 1 sample(s), 0 inconclusive"
        );
        assert!(
            lines[2].starts_with("  prometheus p95: worst no data (warning 1000 ms, critical 2000 ms) — inconclusive")
        );
        assert_eq!(lines[3], "  no data: prometheus p95: connection failed");
        let md = report(Ending::CutShort).markdown();
        assert!(md.contains("watch cut short by a signal after 1m35s of 15m"), "{md}");
        assert!(
            md.contains(
                "| error_rate | 1 % | warning 0.5 %, critical 2 %, immediate 5 % | warning | 1 (0 inconclusive) |"
            ),
            "{md}"
        );
        let text = report(Ending::RolledBack(
            "p95 3000 ms over critical 2000 ms in 2 samples in a row".into(),
        ))
        .headline();
        assert!(text.starts_with("watch breached after 1m35s (p95 3000 ms"), "{text}");
    }
}
