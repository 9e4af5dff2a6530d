//! Host metrics (memory, CPU, disk) judged against the host itself: each host's figures from
//! just before the switch (or, where that sample failed, the watch's first), and the rule that
//! a figure already over a threshold there is a warning said once, never a rollback reason,
//! unless the release makes it clearly worse: over `critical` and more than a margin above its
//! figure from before. App metrics (error rate, p95, PM2 workers) keep absolute thresholds.

use std::collections::{BTreeMap, BTreeSet};

use super::decide::{Level, Reading, Unit, Window, level};
use crate::config::watch::{Levels, Watch};

/// Memory and disk: a figure already over a threshold before the deploy counts against the
/// release only once it is over `critical` and more than 5 percentage points above its figure
/// from before (on a 4 GB host, 200 MB more in use; on a 100 GB disk, 5 GB more written).
pub const MARGIN: f64 = 0.05;

/// CPU busy share over one interval is noisier than memory or disk: 10 percentage points.
pub const CPU_MARGIN: f64 = 0.10;

/// The host metrics, in the order the summary lists them.
pub const METRICS: [&str; 3] = ["memory", "cpu", "disk"];

/// Per host and metric, the figure from before this deploy.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    figures: BTreeMap<(String, &'static str), f64>,
    /// The (host, metric) pairs whose "already over" line was said.
    stated: BTreeSet<(String, &'static str)>,
}

/// Every host's memory, disk and CPU figures in a window.
fn figures(win: &Window) -> Vec<(String, &'static str, f64)> {
    let mut v = Vec::new();
    for (host, s) in &win.hosts {
        let Ok(s) = s else { continue };
        v.extend(s.memory.map(|m| (host.clone(), "memory", m)));
        v.extend(s.disk.map(|d| (host.clone(), "disk", d)));
    }
    for (host, c) in &win.cpu {
        v.extend(c.map(|c| (host.clone(), "cpu", c)));
    }
    v
}

fn levels(w: &Watch, metric: &str) -> (Levels, f64) {
    match metric {
        "memory" => (w.memory, MARGIN),
        "cpu" => (w.cpu, CPU_MARGIN),
        _ => (w.disk, MARGIN),
    }
}

impl Baseline {
    /// Keeps, for each host and metric not known yet, the window's figure.
    pub fn fill(&mut self, win: &Window) {
        for (host, metric, v) in figures(win) {
            self.figures.entry((host, metric)).or_insert(v);
        }
    }

    pub fn get(&self, host: &str, metric: &'static str) -> Option<f64> {
        self.figures.get(&(host.to_string(), metric)).copied()
    }

    /// The figures from before, for the terminal: `a: memory 45 %, cpu 12 %, disk 60 %`.
    pub fn describe(&self) -> Vec<String> {
        let mut hosts: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for metric in METRICS {
            for ((host, m), v) in &self.figures {
                if *m == metric {
                    hosts
                        .entry(host)
                        .or_default()
                        .push(format!("{m} {}", Unit::Ratio.show(*v)));
                }
            }
        }
        hosts
            .into_iter()
            .map(|(h, f)| format!("{h}: {}", f.join(", ")))
            .collect()
    }

    /// One line, said once per host and metric, for each figure that was over a threshold
    /// before this deploy.
    pub fn over(&mut self, w: &Watch) -> Vec<String> {
        let mut out = Vec::new();
        for ((host, metric), b) in &self.figures {
            let (l, margin) = levels(w, metric);
            let (name, threshold) = match level(*b, &l) {
                Level::Warning => ("warning", l.warning),
                Level::Critical | Level::Immediate => ("critical", l.critical),
                Level::Ok | Level::Inconclusive => continue,
            };
            if !self.stated.insert((host.clone(), metric)) {
                continue;
            }
            out.push(format!(
                "{metric} {} on {host} was already over {name} {} before this deploy: not held against \
                 the release unless it goes over critical and rises by more than {} points",
                Unit::Ratio.show(*b),
                Unit::Ratio.show(threshold),
                (margin * 100.0).round()
            ));
        }
        out
    }
}

/// A figure's level against the host's own from before: where both are over a threshold,
/// critical only when it rose by more than `margin`, else a warning. The flag says whether the
/// figure from before decided.
fn judged(v: f64, before: Option<f64>, l: &Levels, margin: f64) -> (Level, bool) {
    let now = level(v, l).min(Level::Critical);
    match before {
        Some(b) if now >= Level::Warning && level(b, l) >= Level::Warning => {
            let worse = now == Level::Critical && v - b > margin;
            (if worse { Level::Critical } else { Level::Warning }, true)
        }
        _ => (now, false),
    }
}

/// One host metric in a window: each host judged against its own figure from before; the
/// reading is the worst host's (highest level, then highest value).
pub fn reading(w: &Watch, metric: &'static str, win: &Window, base: &Baseline) -> Reading {
    let (l, margin) = levels(w, metric);
    let worst = figures(win)
        .into_iter()
        .filter(|(_, m, _)| *m == metric)
        .map(|(host, _, v)| {
            let before = base.get(&host, metric);
            let (level, against) = judged(v, before, &l, margin);
            (level, v, host, before.filter(|_| against))
        })
        .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    match worst {
        Some((level, v, host, before)) => Reading {
            metric,
            unit: Unit::Ratio,
            value: Some(v),
            level,
            levels: l,
            host: Some(host),
            before,
        },
        None => Reading {
            metric,
            unit: Unit::Ratio,
            value: None,
            level: Level::Inconclusive,
            levels: l,
            host: None,
            before: None,
        },
    }
}
