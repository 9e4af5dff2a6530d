//! The post-deploy watch (issue #13): after every host verified, the release is watched for
//! `duration` while the lock is held. Every `interval` (after `initial_delay`) one window is
//! taken from every source — synthetic probes from the runner, one SSH command per host (PM2,
//! memory, CPU, disk), Prometheus when configured — and judged by [`decide`], host metrics
//! against each host's figures from before the switch ([`baseline`]). A breach ends the
//! watch with an error, which the deploy's own failure path turns into a rollback; SIGTERM ends
//! it with the release kept (DESIGN.md §7).

pub mod baseline;
pub mod decide;
pub mod probe;
pub mod prometheus;
mod report;
pub mod sample;

pub use baseline::before;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::watch::Watch;
use crate::error::{Error, Result};
use crate::pipeline::{Ctx, HostRun};
use crate::remote::{Mode, Transport, commands};
use crate::ui;
use baseline::Baseline;
use decide::{Level, Track, Window};
use sample::HostSample;

/// How the watch ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ending {
    Passed,
    /// A breach: what was over which threshold.
    RolledBack(String),
    /// SIGTERM/SIGINT: the release stays.
    CutShort,
}

/// What the watch saw, for every summary and the log line.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub planned_seconds: u64,
    pub watched_seconds: u64,
    /// Windows judged (after `initial_delay`).
    pub samples: u32,
    pub metrics: Vec<Track>,
    /// Each metric's first warning, as said during the watch.
    pub warnings: Vec<String>,
    /// Sources that failed or gave no data (first occurrences, capped).
    pub notes: Vec<String>,
    /// The last PM2 figures per host (reported, not judged).
    pub workers: Vec<String>,
    pub ending: Ending,
}

/// What the loop carries from one window to the next.
struct State {
    report: Report,
    baseline: BTreeMap<String, BTreeMap<i64, i64>>,
    /// Each host's memory, CPU and disk from before the switch; never completed by the watch's
    /// own samples (they are the release's).
    before: Baseline,
    cpu: BTreeMap<String, Option<(u64, u64)>>,
    last_progress: Option<Instant>,
}

/// The watch this run does: the environment's, with `--watch`/`watch` overriding its duration;
/// `None` when the duration is zero (no watch work at all).
pub fn effective(env: &crate::config::EnvConfig, inv: &crate::config::Invocation) -> Option<Watch> {
    let mut w = env.watch.clone();
    if let Some(d) = inv.watch {
        w.duration = d;
    }
    (!w.duration.is_zero()).then_some(w)
}

/// What a dry run says about the watch.
pub fn plan_line(w: &Watch) -> String {
    format!(
        "Then the watch: {} (every {}, the first {} not judged), lock held; {} critical window(s) in a row, \
         or a host down, a PM2 worker errored or restarting, or the error rate at or over immediate, roll back.",
        ui::format_duration(w.duration),
        ui::format_duration(w.interval),
        ui::format_duration(w.initial_delay),
        w.consecutive
    )
}

/// Watches the release for `w.duration`; an `Err` is a breach (roll back).
/// `check`: the GitHub check run to keep `in_progress` with a line of progress; `before`: the
/// hosts' figures from [`before`] (a host or metric missing there: absolute thresholds).
pub async fn run<T: Transport>(
    ctx: &Ctx<'_>,
    hosts: &[HostRun<T>],
    w: &Watch,
    check: Option<(&crate::github::Github, u64)>,
    before: Baseline,
) -> (Report, Result<()>) {
    let started = Instant::now();
    ui::info(&format!(
        "watch: {} every {} ({} not judged), {} probe(s)/s per host",
        ui::format_duration(w.duration),
        ui::format_duration(w.interval),
        ui::format_duration(w.initial_delay),
        w.probe_rate
    ));
    let mut st = State {
        report: report::empty(w),
        baseline: BTreeMap::new(),
        before,
        cpu: BTreeMap::new(),
        last_progress: None,
    };
    progress(&mut st, Duration::ZERO, w.duration, check).await;
    let probes = match probes(ctx, hosts, w) {
        Ok(p) => p,
        Err(e) => return (st.report, Err(e)),
    };
    let http = ctx.http;
    begin(ctx, hosts, w, &mut st).await;
    let mut next = started + w.interval;
    let breach = loop {
        if cancelled_before(next).await {
            st.report.ending = Ending::CutShort;
            break None;
        }
        let mut win = Window {
            probes: probes.window(),
            ..Window::default()
        };
        // A signal must not wait for the window's SSH commands and queries: the lock, the log
        // and the report still have to fit in the runner's grace period.
        let signalled = tokio::select! {
            _ = gather(ctx, hosts, w, http, &mut win, &mut st) => false,
            _ = signalled() => true,
        };
        if signalled {
            st.report.ending = Ending::CutShort;
            break None;
        }
        let judged_at = started.elapsed();
        if judged_at >= w.initial_delay
            && let Some(b) = judge(w, &win, &mut st)
        {
            break Some(b);
        }
        if judged_at >= w.duration {
            break None;
        }
        progress(&mut st, judged_at, w.duration, check).await;
        next += w.interval;
    };
    probes.stop();
    st.report.watched_seconds = started.elapsed().as_secs();
    match breach {
        Some(b) => {
            st.report.ending = Ending::RolledBack(b.clone());
            (st.report, Err(Error::failed(format!("watch: {b}"))))
        }
        None => (st.report, Ok(())),
    }
}

/// The watch's first sample: the PM2 restart counts every later one is compared with, and the
/// CPU counters. Not a baseline for host metrics: the release is already live.
async fn begin<T: Transport>(ctx: &Ctx<'_>, hosts: &[HostRun<T>], w: &Watch, st: &mut State) {
    first(st, sample_all(ctx, hosts, w.interval).await);
    say_before(w, st);
}

fn first(st: &mut State, samples: Vec<(String, std::result::Result<HostSample, String>)>) {
    for (host, s) in samples {
        if let Ok(s) = &s {
            let restarts = s.workers.iter().flatten().map(|wk| (wk.id, wk.restarts)).collect();
            st.baseline.insert(host.clone(), restarts);
            st.cpu.insert(host, s.cpu_ticks);
        }
    }
}

/// Says once per host and metric what was already over a threshold before this deploy.
fn say_before(w: &Watch, st: &mut State) {
    for line in st.before.over(w) {
        ui::warn(&format!("watch: {line}"));
        st.report.warnings.push(line);
    }
}

fn probes<T: Transport>(ctx: &Ctx<'_>, hosts: &[HostRun<T>], w: &Watch) -> Result<probe::Probes> {
    let env = &ctx.config.env;
    let client = reqwest::Client::builder()
        .user_agent(concat!("tj-deploy/", env!("CARGO_PKG_VERSION"), " watch"))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::failed(format!("http client: {e}")))?;
    if env.health_from_host {
        // The runner cannot reach the hosts' apps: no probes from here; each window's probes
        // run on the hosts instead (`host_probes`).
        crate::ui::info("watch: probes run on each host (health_from = \"host\"; health_url only)");
        return Ok(probe::Probes::start(
            Vec::new(),
            &client,
            w.probe_rate,
            env.health_request_timeout,
        ));
    }
    let targets = hosts
        .iter()
        .map(|h| {
            let url = crate::health::url_for(&env.health_url, &h.spec);
            (h.name(), probe::targets(&url, &env.smoke))
        })
        .collect();
    Ok(probe::Probes::start(
        targets,
        &client,
        w.probe_rate,
        env.health_request_timeout,
    ))
}

/// Sleeps until `at`; true when a signal came first.
async fn cancelled_before(at: Instant) -> bool {
    let cancel = crate::signals::Cancel::installed();
    loop {
        if cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
            return true;
        }
        let now = Instant::now();
        if now >= at {
            return false;
        }
        tokio::time::sleep((at - now).min(Duration::from_millis(200))).await;
    }
}

/// Resolves once a signal came (never without the handler).
async fn signalled() {
    let cancel = crate::signals::Cancel::installed();
    loop {
        if cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One SSH command per host, side by side, each bounded by the interval (at least 5 s).
async fn sample_all<T: Transport>(
    ctx: &Ctx<'_>,
    hosts: &[HostRun<T>],
    interval: Duration,
) -> Vec<(String, std::result::Result<HostSample, String>)> {
    let script = commands::watch_sample(&ctx.layout);
    let limit = interval.max(Duration::from_secs(5));
    let script = &script;
    let runs = hosts.iter().map(|h| async move {
        let out = tokio::time::timeout(limit, h.t.run(script, Mode::Capture)).await;
        let s = match out {
            Ok(Ok(o)) if o.success() => Ok(sample::parse(&o.stdout, ctx.layout.deploy_dir.as_str())),
            Ok(Ok(o)) => Err(format!("exit {:?}: {}", o.code, ui::prefix(o.stderr.trim(), 200))),
            Ok(Err(e)) => Err(e.message),
            Err(_) => Err(format!("no answer within {}", ui::format_duration(limit))),
        };
        (h.name(), s)
    });
    futures_util::future::join_all(runs).await
}

/// Fills the window's host and Prometheus facts; keeps each host's CPU counters.
async fn gather<T: Transport>(
    ctx: &Ctx<'_>,
    hosts: &[HostRun<T>],
    w: &Watch,
    http: &reqwest::Client,
    win: &mut Window,
    st: &mut State,
) {
    // Private hosts (health_from = "host"): the window's probes run on each host, side by side
    // with the sample, over most of the interval.
    let (samples, on_hosts) = tokio::join!(sample_all(ctx, hosts, w.interval), host_probes(ctx, hosts, w));
    if ctx.config.env.health_from_host {
        win.probes = on_hosts;
    }
    for (host, s) in samples {
        if let Ok(s) = &s {
            let before = st.cpu.insert(host.clone(), s.cpu_ticks).flatten();
            win.cpu.insert(host.clone(), sample::cpu_busy(before, s.cpu_ticks));
            st.report.workers = report::workers(&st.report.workers, &host, s);
        }
        win.hosts.insert(host, s);
    }
    if let Some(p) = &w.prometheus {
        for (name, q) in [("prometheus error_rate", &p.error_rate), ("prometheus p95", &p.p95)] {
            if let Some(q) = q {
                win.prometheus.push((name, prometheus::query(http, &p.url, q).await));
            }
        }
    }
}

/// With `health_from = "host"`: `health_url` probed on every host at `probe_rate` for most of
/// one interval (one SSH command per host, bounded; see `commands::probe_loop`). Empty otherwise.
async fn host_probes<T: Transport>(
    ctx: &Ctx<'_>,
    hosts: &[HostRun<T>],
    w: &Watch,
) -> BTreeMap<String, decide::HostProbes> {
    let env = &ctx.config.env;
    if !env.health_from_host {
        return BTreeMap::new();
    }
    let every = Duration::from_secs_f64(1.0 / w.probe_rate.max(0.01));
    let span = w.interval.mul_f64(0.8);
    // A stop file nobody writes: the loop ends by its own bound.
    let never = format!("{}/watch-probes-{}.never", ctx.layout.meta(), ctx.owner.token);
    let runs = hosts.iter().filter_map(|h| {
        let tool = h.http_tool?;
        let url = crate::health::url_for(&env.health_url, &h.spec);
        let script = commands::probe_loop(tool, &url, every, env.health_request_timeout, span, &never);
        Some(async move { (h.name(), h.t.run(&script, Mode::Capture).await) })
    });
    let mut out = BTreeMap::new();
    for (name, run) in futures_util::future::join_all(runs).await {
        match run {
            Ok(o) => {
                let (samples, _) = crate::availability::parse_loop(&o.stdout);
                let probes = decide::HostProbes {
                    sent: samples.len() as u64,
                    failed: samples.iter().filter(|s| !s.ok).count() as u64,
                    latencies: samples.iter().map(|s| s.latency_ms as f64 / 1000.0).collect(),
                };
                out.insert(name, probes);
            }
            Err(e) => ui::warn(&format!("{name}: watch probes on the host: {e}")),
        }
    }
    out
}

/// Judges one window into the report; returns the breach, if any.
fn judge(w: &Watch, win: &Window, st: &mut State) -> Option<String> {
    let j = decide::judge(w, win, &st.baseline, &st.before);
    st.report.samples += 1;
    for n in &j.notes {
        report::note(&mut st.report, n);
    }
    // A figure already over a threshold before the deploy was said once, by `say_before`.
    for r in j
        .readings
        .iter()
        .filter(|r| r.level == Level::Warning && r.before.is_none())
    {
        let said = |x: &String| x.starts_with(r.metric) && !x.contains(" was already over ");
        if !st.report.warnings.iter().any(said) {
            let line = format!(
                "{} {} over warning {}",
                r.metric,
                r.unit.show(r.value.unwrap_or(0.0)),
                r.unit.show(r.levels.warning)
            );
            ui::warn(&format!("watch: {line}"));
            st.report.warnings.push(line);
        }
    }
    decide::track(&mut st.report.metrics, &j, w.consecutive)
}

/// A progress line (terminal and check run) at the start, then at most once a minute.
async fn progress(st: &mut State, at: Duration, total: Duration, check: Option<(&crate::github::Github, u64)>) {
    if st.last_progress.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
        return;
    }
    st.last_progress = Some(Instant::now());
    let line = format!(
        "watching the release: {} of {}, {} sample(s) judged, no breach",
        ui::format_duration(at),
        ui::format_duration(total),
        st.report.samples
    );
    if !at.is_zero() {
        ui::info(&format!("watch: {line}"));
    }
    if let Some((gh, id)) = check {
        let title = format!(
            "watching the release ({} of {})",
            ui::format_duration(at),
            ui::format_duration(total)
        );
        if let Err(e) = crate::github::report::progress_check(gh, id, &title, &line).await {
            report::note(&mut st.report, &format!("check run progress: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(w: &Watch, before: Baseline) -> State {
        State {
            report: report::empty(w),
            baseline: BTreeMap::new(),
            before,
            cpu: BTreeMap::new(),
            last_progress: None,
        }
    }

    /// Host a's sample: memory and disk, CPU busy as given.
    fn window(memory: f64, disk: f64, cpu: f64) -> (HostSample, Window) {
        let s = HostSample {
            workers: Some(Vec::new()),
            memory: Some(memory),
            cpu_ticks: Some((1, 2)),
            disk: Some(disk),
        };
        let mut win = Window::default();
        win.hosts.insert("a".into(), Ok(s.clone()));
        win.cpu.insert("a".into(), Some(cpu));
        (s, win)
    }

    #[test]
    fn a_host_missing_before_the_switch_keeps_the_absolute_thresholds() {
        let raw: crate::config::watch::RawWatch = toml::from_str("consecutive = 2\n").unwrap();
        let w = crate::config::watch::parse("w", Some(&raw), "r", None).unwrap();
        // The sample before the switch failed for host a; the release pins its CPU at 99 %.
        let mut st = state(&w, Baseline::default());
        let (s, win) = window(0.99, 0.5, 0.99);
        first(&mut st, vec![("a".into(), Ok(s))]);
        say_before(&w, &mut st);
        assert_eq!(
            st.before.get("a", "memory"),
            None,
            "the watch's first sample is the release's"
        );
        assert!(st.report.warnings.is_empty(), "{:?}", st.report.warnings);
        assert_eq!(judge(&w, &win, &mut st), None, "consecutive still applies");
        let breach = judge(&w, &win, &mut st).expect("over critical twice: roll back");
        assert!(breach.starts_with("memory 99 % over critical"), "{breach}");
        assert!(
            st.report.warnings.iter().all(|l| !l.contains("already over")),
            "{:?}",
            st.report.warnings
        );
    }
}
