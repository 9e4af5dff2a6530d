//! The watch's decisions, pure: one window's facts → a level per metric, plus the immediate
//! reasons (a host that failed every probe, a PM2 worker errored, stopped or restarting after
//! the baseline); then, across windows, `consecutive` critical samples in a row → a breach.
//! No data and too few requests are inconclusive, never a breach (Argo/Flagger's lesson).
//! Host metrics are judged against each host's figures from before the deploy ([`baseline`]).

use std::collections::BTreeMap;

use serde::Serialize;

use super::baseline::{self, Baseline};
use super::sample::HostSample;
use crate::config::watch::{Levels, Watch};

/// A host that failed every one of at least this many probes in a window is down.
pub const MIN_DOWN_PROBES: u64 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Inconclusive,
    Ok,
    Warning,
    Critical,
    Immediate,
}

/// How a metric's values read: a ratio shown as a percentage, or seconds shown in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Ratio,
    Seconds,
}

impl Unit {
    pub fn show(self, v: f64) -> String {
        match self {
            Unit::Ratio => format!("{} %", trim(v * 100.0)),
            Unit::Seconds => format!("{} ms", (v * 1000.0).round()),
        }
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The synthetic probes one host answered in a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostProbes {
    pub sent: u64,
    pub failed: u64,
    /// Seconds, of every probe (a timeout counts as its full wait).
    pub latencies: Vec<f64>,
}

/// One window's facts from every source.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// Per host name.
    pub probes: BTreeMap<String, HostProbes>,
    /// Per host name: its sample, or why the SSH command failed.
    pub hosts: BTreeMap<String, Result<HostSample, String>>,
    /// Per host name: CPU busy since the previous sample.
    pub cpu: BTreeMap<String, Option<f64>>,
    /// `prometheus error_rate` / `prometheus p95`: a value, no data, or the source's failure.
    pub prometheus: Vec<(&'static str, Result<Option<f64>, String>)>,
}

/// One metric in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub metric: &'static str,
    pub unit: Unit,
    pub value: Option<f64>,
    pub level: Level,
    pub levels: Levels,
    /// A host metric: the host it was read on (the worst one).
    pub host: Option<String>,
    /// A host metric already over a threshold before the deploy: its figure then.
    pub before: Option<f64>,
}

/// What one window decided.
#[derive(Debug, Clone, Default)]
pub struct Judged {
    pub readings: Vec<Reading>,
    /// Reasons to roll back now.
    pub immediate: Vec<String>,
    /// Sources that failed (reported, never a rollback).
    pub notes: Vec<String>,
}

/// Over warning / over critical (the runbook's "error rate > 5 %"); at or over immediate.
pub fn level(v: f64, l: &Levels) -> Level {
    match l.immediate {
        Some(i) if v >= i => Level::Immediate,
        _ if v > l.critical => Level::Critical,
        _ if v > l.warning => Level::Warning,
        _ => Level::Ok,
    }
}

fn reading(metric: &'static str, unit: Unit, value: Option<f64>, levels: Levels) -> Reading {
    let level = value.map_or(Level::Inconclusive, |v| level(v, &levels));
    Reading {
        metric,
        unit,
        value,
        level,
        levels,
        host: None,
        before: None,
    }
}

/// The nearest-rank 95th percentile.
pub fn p95(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((0.95 * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Judges one window. `baseline`: each host's PM2 restart count per `pm_id` at the start;
/// `before`: each host's memory, CPU and disk from before the deploy.
pub fn judge(w: &Watch, win: &Window, baseline: &BTreeMap<String, BTreeMap<i64, i64>>, before: &Baseline) -> Judged {
    let mut j = Judged::default();
    probes(w, win, &mut j);
    for (host, sample) in &win.hosts {
        match sample {
            Ok(s) => pm2(host, s, baseline.get(host), &mut j),
            Err(e) => j.notes.push(format!("{host}: no sample ({e})")),
        }
    }
    for metric in baseline::METRICS {
        j.readings.push(baseline::reading(w, metric, win, before));
    }
    for (name, r) in &win.prometheus {
        let (unit, levels) = match *name {
            "prometheus p95" => (Unit::Seconds, w.p95),
            _ => (Unit::Ratio, w.error_rate),
        };
        if let Err(e) = r {
            j.notes.push(format!("{name}: {e}"));
        }
        let r = reading(name, unit, r.clone().ok().flatten(), levels);
        // The runbook's "error rate > 5 %: ROLLBACK IMMEDIATELY", whichever source measured it.
        if r.level == Level::Immediate {
            j.immediate.push(immediate_line(&r, "from Prometheus"));
        }
        j.readings.push(r);
    }
    j
}

fn immediate_line(r: &Reading, how: &str) -> String {
    format!(
        "{} {} at or over immediate {} ({how})",
        r.metric,
        r.unit.show(r.value.unwrap_or(0.0)),
        r.unit.show(r.levels.immediate.unwrap_or(0.0))
    )
}

/// Error rate and p95 of what the probes sent (inconclusive under `min_requests`), and any
/// host that failed every probe.
fn probes(w: &Watch, win: &Window, j: &mut Judged) {
    let sent: u64 = win.probes.values().map(|p| p.sent).sum();
    let failed: u64 = win.probes.values().map(|p| p.failed).sum();
    let latencies: Vec<f64> = win.probes.values().flat_map(|p| p.latencies.iter().copied()).collect();
    let enough = sent > 0 && sent >= w.min_requests;
    let rate = enough.then(|| failed as f64 / sent as f64);
    j.readings.push(reading("error_rate", Unit::Ratio, rate, w.error_rate));
    j.readings
        .push(reading("p95", Unit::Seconds, p95(&latencies).filter(|_| enough), w.p95));
    if let Some(r) = j
        .readings
        .iter()
        .find(|r| r.metric == "error_rate" && r.level == Level::Immediate)
    {
        let line = immediate_line(r, &format!("{failed} of {sent} probes failed"));
        j.immediate.push(line);
    }
    for (host, p) in &win.probes {
        if p.sent >= MIN_DOWN_PROBES && p.failed == p.sent {
            j.immediate
                .push(format!("{host}: every probe failed ({} of {})", p.failed, p.sent));
        }
    }
}

fn pm2(host: &str, s: &HostSample, baseline: Option<&BTreeMap<i64, i64>>, j: &mut Judged) {
    let Some(workers) = &s.workers else {
        j.notes.push(format!("{host}: pm2 jlist gave no process list"));
        return;
    };
    for wk in workers {
        if wk.status == "errored" || wk.status == "stopped" {
            j.immediate
                .push(format!("{host}: PM2 worker {} ({}) is {}", wk.name, wk.id, wk.status));
        } else if let Some(base) = baseline.and_then(|b| b.get(&wk.id)).filter(|b| wk.restarts > **b) {
            j.immediate.push(format!(
                "{host}: PM2 worker {} ({}) restarted {} time(s) since the watch began",
                wk.name,
                wk.id,
                wk.restarts - base
            ));
        }
    }
}

/// One metric across the watch.
#[derive(Debug, Clone, Serialize)]
pub struct Track {
    pub metric: &'static str,
    pub unit: Unit,
    pub worst: Option<f64>,
    pub verdict: Level,
    pub samples: u32,
    pub inconclusive: u32,
    pub levels: Levels,
    #[serde(skip)]
    streak: u32,
}

/// Adds a judged window to the tracks; returns the breach that ends the watch, if any.
pub fn track(tracks: &mut Vec<Track>, j: &Judged, consecutive: u32) -> Option<String> {
    let mut breach = j.immediate.first().cloned();
    for r in &j.readings {
        let i = match tracks.iter().position(|t| t.metric == r.metric) {
            Some(i) => i,
            None => {
                tracks.push(Track {
                    metric: r.metric,
                    unit: r.unit,
                    worst: None,
                    verdict: Level::Inconclusive,
                    samples: 0,
                    inconclusive: 0,
                    levels: r.levels,
                    streak: 0,
                });
                tracks.len() - 1
            }
        };
        let t = &mut tracks[i];
        t.samples += 1;
        let Some(v) = r.value else {
            t.inconclusive += 1;
            continue;
        };
        t.worst = Some(t.worst.map_or(v, |w| w.max(v)));
        t.verdict = t.verdict.max(r.level.min(Level::Critical));
        t.streak = if r.level >= Level::Critical { t.streak + 1 } else { 0 };
        if t.streak >= consecutive && breach.is_none() {
            let whence = match (&r.host, r.before) {
                (Some(h), Some(b)) => format!(" on {h} (up from {} before this deploy)", r.unit.show(b)),
                (Some(h), None) => format!(" on {h}"),
                _ => String::new(),
            };
            breach = Some(format!(
                "{} {} over critical {}{whence} in {} samples in a row",
                r.metric,
                r.unit.show(v),
                r.unit.show(r.levels.critical),
                t.streak
            ));
        }
    }
    breach
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
