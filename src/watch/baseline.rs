//! Host metrics (memory, CPU, disk) judged against the host itself: each host's figures from
//! just before the switch ([`before`]; a host or metric missing there keeps the absolute
//! thresholds, never the watch's own first sample, which is already the release's), and the
//! rule that a figure already over a threshold there is a warning said once, never a rollback
//! reason, unless the release makes it clearly worse: over `critical` and more than a margin
//! above its figure from before, or at or over [`ABSOLUTE`]. App metrics (error rate, p95, PM2
//! workers) keep absolute thresholds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::decide::{Level, Reading, Unit, Window, level};
use super::sample;
use crate::config::watch::{Levels, Watch};
use crate::pipeline::{Ctx, HostRun};
use crate::remote::{Mode, Transport, commands};
use crate::ui;

/// Memory and disk: a figure already over a threshold before the deploy counts against the
/// release only once it is over `critical` and more than 5 percentage points above its figure
/// from before (on a 4 GB host, 200 MB more in use; on a 100 GB disk, 5 GB more written).
pub const MARGIN: f64 = 0.05;

/// CPU busy share over one interval is noisier than memory or disk: 10 percentage points.
pub const CPU_MARGIN: f64 = 0.10;

/// A figure at or over this is judged by the absolute thresholds whatever the host carried
/// before: a full disk or memory, or a pinned CPU, is never explained away by a baseline that
/// was itself high (or, for CPU, one noisy second).
pub const ABSOLUTE: f64 = 0.98;

/// The bound on the command before the switch: it sleeps 2 s; a host slower than this to
/// answer keeps the absolute thresholds rather than hold the deploy up.
const BEFORE_LIMIT: Duration = Duration::from_secs(6);

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
                 the release unless it goes over critical and rises by more than {} points, or reaches {}",
                Unit::Ratio.show(*b),
                Unit::Ratio.show(threshold),
                (margin * 100.0).round(),
                Unit::Ratio.show(ABSOLUTE)
            ));
        }
        out
    }
}

/// A figure's level against the host's own from before: where both are over a threshold,
/// critical only when it rose by more than `margin`, else a warning; at or over [`ABSOLUTE`],
/// the absolute level. The flag says whether the figure from before decided.
fn judged(v: f64, before: Option<f64>, l: &Levels, margin: f64) -> (Level, bool) {
    let now = level(v, l).min(Level::Critical);
    match before {
        Some(b) if v < ABSOLUTE && now >= Level::Warning && level(b, l) >= Level::Warning => {
            let worse = now == Level::Critical && v - b > margin;
            (if worse { Level::Critical } else { Level::Warning }, true)
        }
        _ => (now, false),
    }
}

/// Each host's memory, disk and CPU just before the switch: what a host carried before this
/// deploy is not held against the release. One light command per host (no PM2), side by side,
/// bounded by [`BEFORE_LIMIT`]; a host that fails it keeps the absolute thresholds. Only called
/// when a watch will run.
pub async fn before<T: Transport>(ctx: &Ctx<'_>, hosts: &[HostRun<T>]) -> Baseline {
    let script = commands::host_figures(&ctx.layout);
    let script = &script;
    let runs = hosts.iter().map(|h| async move {
        let out = tokio::time::timeout(BEFORE_LIMIT, h.t.run(script, Mode::Capture)).await;
        (h.name(), out)
    });
    let mut win = Window::default();
    for (host, out) in futures_util::future::join_all(runs).await {
        let Ok(Ok(out)) = out else { continue };
        let (s, busy) = sample::figures(&out.stdout);
        // The lower of two one-second readings: a spike (a cron job, the unpacking just done)
        // rarely fills both, while a host that is busy all along shows in both. Measuring over
        // 2 s would average a spike in, not leave it out.
        win.cpu.insert(host.clone(), busy.into_iter().reduce(f64::min));
        win.hosts.insert(host, Ok(s));
    }
    let mut b = Baseline::default();
    b.fill(&win);
    let figures = b.describe();
    ui::info(&match figures.is_empty() {
        true => "watch: no host figures before the switch (absolute thresholds apply)".to_string(),
        false => format!("watch: host figures before the switch: {}", figures.join("; ")),
    });
    b
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
