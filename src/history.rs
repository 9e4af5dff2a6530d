//! The weekly review's arithmetic (DESIGN.md §7 "Stats arithmetic"): the runs recorded in every
//! host's `deployments.log`, deduplicated by id across hosts, and the DORA measures computed from
//! them (deployment frequency, change failure rate, time to restore) with the counts behind each,
//! medians and p90. Pure: the hosts' logs come in as text.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::Value;

/// One run as the server logged it (the kinds `history` lists: deploy, rollback, restart).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Run {
    pub kind: String,
    pub id: String,
    pub commit: Option<String>,
    pub status: String,
    pub actor: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The release that was live before the run (for a rollback: the one it undid).
    pub previous: Option<String>,
    /// The release it made live (a deploy: its id; a rollback: the release restored).
    pub release: Option<String>,
    pub hosts: Vec<String>,
}

impl Run {
    pub fn duration_secs(&self) -> i64 {
        (self.finished_at - self.started_at).num_seconds().max(0)
    }
}

const KINDS: [&str; 4] = ["deploy", "rollback", "restart", "adopt"];

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn time(v: &Value, key: &str) -> Option<DateTime<Utc>> {
    let s = v.get(key)?.as_str()?;
    Some(DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc))
}

/// Parses one host's deployments.log; lines that are not runs (unlock, torn or foreign lines)
/// are skipped and counted.
pub fn parse(host: &str, log: &str) -> (Vec<Run>, usize) {
    let mut skipped = 0;
    let mut runs = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            skipped += 1;
            continue;
        };
        let kind = text(&v, "kind").unwrap_or_default();
        if kind == "unlock" {
            continue;
        }
        let parsed = (|| {
            let started_at = time(&v, "started_at")?;
            Some(Run {
                id: text(&v, "id")?,
                commit: text(&v, "commit"),
                status: text(&v, "status")?,
                actor: text(&v, "actor"),
                finished_at: time(&v, "finished_at").unwrap_or(started_at),
                started_at,
                previous: text(&v, "previous"),
                release: text(&v, "release"),
                hosts: vec![text(&v, "host").unwrap_or_else(|| host.to_string())],
                kind: kind.clone(),
            })
        })();
        match parsed {
            Some(run) if KINDS.contains(&kind.as_str()) => runs.push(run),
            _ => skipped += 1,
        }
    }
    (runs, skipped)
}

/// One record per (kind, id) across hosts, oldest first. A run that failed on any host counts
/// as failed: hosts log the run's own status, so they agree unless a log was edited.
pub fn dedupe(runs: Vec<Run>) -> Vec<Run> {
    let mut by_id: BTreeMap<(String, String), Run> = BTreeMap::new();
    for run in runs {
        match by_id.get_mut(&(run.kind.clone(), run.id.clone())) {
            Some(seen) => {
                seen.hosts.extend(run.hosts);
                seen.hosts.sort();
                seen.hosts.dedup();
                seen.started_at = seen.started_at.min(run.started_at);
                seen.finished_at = seen.finished_at.max(run.finished_at);
                if seen.status == "success" && run.status != "success" {
                    seen.status = run.status;
                }
            }
            None => {
                by_id.insert((run.kind.clone(), run.id.clone()), run);
            }
        }
    }
    let mut all: Vec<Run> = by_id.into_values().collect();
    all.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
    all
}

/// Median, p90 (nearest rank) and count of a set of durations in seconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Spread {
    pub count: usize,
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<i64>,
}

pub fn spread(mut xs: Vec<i64>) -> Spread {
    xs.sort_unstable();
    let n = xs.len();
    let median = match n {
        0 => None,
        _ if n % 2 == 1 => Some(xs[n / 2] as f64),
        _ => Some((xs[n / 2 - 1] + xs[n / 2]) as f64 / 2.0),
    };
    // Nearest rank: the smallest value with at least 90 % of the values at or below it.
    let p90 = (n > 0).then(|| xs[(n * 9).div_ceil(10) - 1]);
    Spread {
        count: n,
        median_seconds: median,
        p90_seconds: p90,
    }
}

/// The DORA figures over a window, with the counts they come from.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stats {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub days: f64,
    pub deploys: usize,
    pub successful_deploys: usize,
    pub failed_deploys: usize,
    pub rolled_back_deploys: usize,
    /// Successful deploys a manual rollback undid before the next deploy.
    pub undone_by_rollback: usize,
    pub rollbacks: usize,
    pub restarts: usize,
    pub deploys_per_day: f64,
    pub deploys_per_week: f64,
    pub change_failure_rate: Option<f64>,
    pub time_to_restore: Spread,
    /// Failures with no successful deploy or rollback after them yet.
    pub unrestored: usize,
    pub deploy_duration: Spread,
    /// Lead time needs each commit's time from GitHub; the reason it is absent.
    pub lead_time: Option<Spread>,
    pub lead_time_note: Option<String>,
}

fn is_failed(status: &str) -> bool {
    matches!(status, "failure" | "rolled-back")
}

/// Computes the figures over the runs that started in `[until - window, until]`.
pub fn stats(runs: &[Run], window: Duration, until: DateTime<Utc>) -> Stats {
    let since = until - window;
    let runs: Vec<&Run> = runs
        .iter()
        .filter(|r| r.started_at >= since && r.started_at <= until && r.status != "refused")
        .collect();
    let deploys: Vec<&Run> = runs.iter().copied().filter(|r| r.kind == "deploy").collect();
    // The moment each failure began: a failed deploy's end, or the start of the manual rollback
    // that undid a successful one before the next deploy.
    let mut failures: Vec<DateTime<Utc>> = Vec::new();
    let mut undone = 0;
    for (i, d) in deploys.iter().enumerate() {
        if is_failed(&d.status) {
            failures.push(d.finished_at);
            continue;
        }
        let next_deploy = deploys.get(i + 1).map(|n| n.started_at);
        let undoer = runs.iter().find(|r| {
            r.kind == "rollback"
                && r.status == "success"
                && r.started_at > d.started_at
                && next_deploy.is_none_or(|n| r.started_at < n)
                && r.previous.as_ref().is_none_or(|p| *p == d.id)
        });
        if let Some(r) = undoer {
            undone += 1;
            failures.push(r.started_at);
        }
    }
    let mut restore = Vec::new();
    let mut unrestored = 0;
    for start in &failures {
        let fix = runs
            .iter()
            .filter(|r| matches!(r.kind.as_str(), "deploy" | "rollback") && r.status == "success")
            .filter(|r| r.finished_at > *start)
            .map(|r| r.finished_at)
            .min();
        match fix {
            Some(t) => restore.push((t - *start).num_seconds()),
            None => unrestored += 1,
        }
    }
    let days = window.num_seconds() as f64 / 86_400.0;
    let count = |kind: &str, status: Option<&str>| {
        runs.iter()
            .filter(|r| r.kind == kind && status.is_none_or(|s| r.status == s))
            .count()
    };
    let n = deploys.len();
    Stats {
        since,
        until,
        days,
        deploys: n,
        successful_deploys: count("deploy", Some("success")),
        failed_deploys: count("deploy", Some("failure")),
        rolled_back_deploys: count("deploy", Some("rolled-back")),
        undone_by_rollback: undone,
        rollbacks: count("rollback", None),
        restarts: count("restart", None),
        deploys_per_day: if days > 0.0 { n as f64 / days } else { 0.0 },
        deploys_per_week: if days > 0.0 { n as f64 * 7.0 / days } else { 0.0 },
        change_failure_rate: (n > 0).then(|| failures.len() as f64 / n as f64),
        time_to_restore: spread(restore),
        unrestored,
        deploy_duration: spread(deploys.iter().map(|d| d.duration_secs()).collect()),
        lead_time: None,
        lead_time_note: None,
    }
}

/// The successful deploys in the window, each with the commit shipped before it (the previous
/// successful deploy's, which may lie before the window): what lead time asks GitHub about.
pub fn shipped(runs: &[Run], window: Duration, until: DateTime<Utc>) -> Vec<(Option<String>, String, DateTime<Utc>)> {
    let since = until - window;
    let mut previous: Option<String> = None;
    let mut out = Vec::new();
    for r in runs.iter().filter(|r| r.kind == "deploy" && r.status == "success") {
        let Some(commit) = r.commit.clone() else { continue };
        if r.started_at >= since && r.started_at <= until && previous.as_deref() != Some(commit.as_str()) {
            out.push((previous.clone(), commit.clone(), r.finished_at));
        }
        previous = Some(commit);
    }
    out
}

/// Lead time for changes: from each shipped commit's time to the end of the deploy that
/// shipped it.
pub fn lead_time(deploys: &[(DateTime<Utc>, Vec<DateTime<Utc>>)]) -> Spread {
    spread(
        deploys
            .iter()
            .flat_map(|(done, commits)| commits.iter().map(move |c| (*done - *c).num_seconds().max(0)))
            .collect(),
    )
}

/// Parses `--since`: `30d`, `2w`, `12h`.
pub fn window(input: &str, s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num
        .parse()
        .ok()
        .filter(|n| *n > 0 && *n <= 3650)
        .ok_or_else(|| format!("{input}: {t:?} is not a period (e.g. \"30d\", \"2w\", \"12h\")"))?;
    match unit {
        "h" => Ok(Duration::hours(n)),
        "d" | "" => Ok(Duration::days(n)),
        "w" => Ok(Duration::weeks(n)),
        _ => Err(format!(
            "{input}: {t:?} is not a period (e.g. \"30d\", \"2w\", \"12h\")"
        )),
    }
}

/// `1h 02m`, `3m 05s`, `42s`.
pub fn human(secs: f64) -> String {
    let s = secs.round() as i64;
    match s {
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
