//! Availability during activation (issue #12 item 4): every host's health URL is probed from
//! just before the first switch until the last verification ends. A failed probe is a warning;
//! with `availability = "enforce"` it fails the run, which then rolls back like any failure.
//! With `health_from = "host"` the probes run on each host (issue #21): one probe loop per host
//! over SSH for the window, ended by a stop file once activation is over, or by the transport's
//! watchdog when the run ends any other way, and in any case after a bounded time.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::availability::{INTERVAL, Probe, Report, TIMEOUT, client, parse_loop, report_of_loops};
use crate::error::{Error, Result};
use crate::pipeline::{Ctx, HostRun, Progress};
use crate::remote::commands::{self, HttpTool};
use crate::remote::{Mode, Transport};
use crate::ui;

/// Activation waits this long after the loops were sent, so they run before the first switch
/// (a channel on an open SSH connection starts within milliseconds).
const START_LEAD: Duration = Duration::from_millis(250);

/// How long host loops may take to end once told to stop, before their channels are closed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The probes of one activation window.
pub enum Window {
    /// From the runner, to each distinct health URL.
    Runner(Probe),
    /// On each host: its client, its URL, and the stop file every loop watches.
    Hosts {
        loops: Vec<(HttpTool, String)>,
        stop_file: String,
        max: Duration,
    },
}

impl Window {
    /// Starts the probes from the runner, or gets ready to run them on each host (its HTTP
    /// client detected once and kept on the [`HostRun`]).
    pub async fn open<T: Transport>(ctx: &Ctx<'_>, hosts: &mut [HostRun<T>]) -> Result<Window> {
        let env = &ctx.config.env;
        if !env.health_from_host {
            let mut urls: Vec<String> = Vec::new();
            for h in hosts.iter() {
                let url = crate::health::url_for(&env.health_url, &h.spec);
                if !urls.contains(&url) {
                    urls.push(url);
                }
            }
            return Ok(Window::Runner(Probe::start(&urls, &client()?)));
        }
        http_clients(ctx, hosts).await?;
        let loops = hosts
            .iter()
            .filter_map(|h| Some((h.http_tool?, crate::health::url_for(&env.health_url, &h.spec))))
            .collect();
        // Every host may take its reload and its verification, one after the other.
        let per_host = env.timeouts.limit("reload") + env.health_timeout + Duration::from_secs(30);
        Ok(Window::Hosts {
            loops,
            stop_file: format!("{}/probe-{}.stop", ctx.layout.meta(), ctx.owner.token),
            max: per_host * hosts.len().max(1) as u32,
        })
    }

    /// Runs `activation` inside the window and decides: its own result, or — for a deploy,
    /// when `availability = "enforce"` — a failure when a probe failed. A rollback only
    /// reports: undoing it would put back the release being rolled away from. `ts` are the
    /// hosts' transports, in order.
    pub async fn during<T: Transport>(
        self,
        ctx: &Ctx<'_>,
        ts: &[&T],
        activation: impl Future<Output = Result<()>>,
        deploy: bool,
    ) -> (Report, Result<()>) {
        let (report, activated) = match self {
            Window::Runner(probe) => {
                let activated = activation.await;
                (probe.stop().await, activated)
            }
            Window::Hosts { loops, stop_file, max } => on_hosts(ts, &loops, &stop_file, max, activation).await,
        };
        decide(ctx, report, activated, deploy)
    }
}

/// With `health_from = "host"`, each host's HTTP client, detected once per run and kept on
/// its [`HostRun`]. Called right after inspecting the hosts, so a host without one fails the
/// run before anything on it changed.
pub async fn http_clients<T: Transport>(ctx: &Ctx<'_>, hosts: &mut [HostRun<T>]) -> Result<()> {
    if !ctx.config.env.health_from_host {
        return Ok(());
    }
    for h in hosts.iter_mut().filter(|h| h.http_tool.is_none()) {
        h.http_tool = Some(crate::health_host::detect(&h.t).await?);
    }
    Ok(())
}

/// One probe loop per host, side by side with `activation`; once that ended, the stop file on
/// every host, and the loops' lines make the report.
async fn on_hosts<T: Transport>(
    ts: &[&T],
    loops: &[(HttpTool, String)],
    stop_file: &str,
    max: Duration,
    activation: impl Future<Output = Result<()>>,
) -> (Report, Result<()>) {
    let started = Instant::now();
    let stopped = Notify::new();
    let runs = futures_util::future::join_all(ts.iter().zip(loops).map(|(t, (tool, url))| {
        let script = commands::probe_loop(*tool, url, INTERVAL, TIMEOUT, max, stop_file);
        async move {
            match t.run(&script, Mode::Capture).await {
                Ok(out) => Some(out.stdout),
                Err(e) => {
                    ui::warn(&format!("{}: availability probes on the host: {e}", t.name()));
                    None
                }
            }
        }
    }));
    let probes = async {
        tokio::select! {
            outs = runs => Some(outs),
            // Dropping the runs closes their channels: the watchdog ends the loops.
            _ = async { stopped.notified().await; tokio::time::sleep(STOP_GRACE).await } => None,
        }
    };
    let act = async {
        tokio::time::sleep(START_LEAD).await;
        let r = activation.await;
        let stop = commands::probe_stop(stop_file);
        for t in ts {
            if let Err(e) = t.run(&stop, Mode::Capture).await {
                ui::warn(&format!("{}: stop the availability probes: {e}", t.name()));
            }
        }
        stopped.notify_one();
        r
    };
    let (outs, activated) = tokio::join!(probes, act);
    let window = started.elapsed();
    let outs = outs.unwrap_or_else(|| {
        ui::warn("the availability probes on the hosts did not end when told; their figures are lost");
        Vec::new()
    });
    let parsed: Vec<_> = outs.iter().flatten().map(|o| parse_loop(o)).collect();
    (report_of_loops(&parsed, window), activated)
}

fn decide(ctx: &Ctx<'_>, report: Report, activated: Result<()>, deploy: bool) -> (Report, Result<()>) {
    ui::info(&report.to_string());
    if report.failed == 0 {
        return (report, activated);
    }
    ui::warn(&format!(
        "{report}: requests failed while the release changed (see the ecosystem warnings, if any)"
    ));
    match activated {
        Ok(()) if deploy && ctx.config.env.availability_enforce => (
            report,
            Err(Error::failed(format!("{report} (availability = \"enforce\")"))),
        ),
        other => (report, other),
    }
}

/// The hosts as activation sees them during the window: each one's transport borrowed (so
/// the probe loops can use it at the same time), and the transports alone, for the window.
pub fn views<T>(hosts: &[HostRun<T>]) -> (Vec<&T>, Vec<HostRun<&T>>) {
    let views = hosts
        .iter()
        .map(|h| HostRun {
            spec: h.spec.clone(),
            t: &h.t,
            state: h.state.clone(),
            progress: h.progress,
            http_tool: h.http_tool,
        })
        .collect();
    (hosts.iter().map(|h| &h.t).collect(), views)
}

/// How far activation got on each view, to put back on the hosts with [`settle`].
pub fn progress<T>(views: &[HostRun<T>]) -> Vec<(Progress, Option<HttpTool>)> {
    views.iter().map(|v| (v.progress, v.http_tool)).collect()
}

pub fn settle<T>(hosts: &mut [HostRun<T>], progress: Vec<(Progress, Option<HttpTool>)>) {
    for (h, (p, tool)) in hosts.iter_mut().zip(progress) {
        h.progress = p;
        h.http_tool = tool;
    }
}
