//! `tj-deploy setup --adopt`: takes over a server deployed by the runbook's scripts (the app
//! unpacked in `deploy_dir`, PM2 running it from there) without stopping it. Under the lock,
//! per host: hard-link the app into `releases/<id>` (linked files into `shared/`), write
//! REVISION, point `current` at it; start the app from `current` under a temporary PM2 name
//! (cluster apps of one PM2 daemon share their port) and wait until it listens; delete the old
//! processes (they drain); start the app's own names from `current`; verify as a deploy does;
//! delete the temporary copy, `pm2 save`, remove the originals. Any failure puts the host back
//! as it was (the old app serving from `deploy_dir`). Refusals (exit 3) change nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use serde_json::json;

use crate::config::{Config, Invocation, ReleaseId};
use crate::error::{Error, Kind, Result};
use crate::health;
use crate::lock::LockOwner;
use crate::pipeline::{Ctx, HostRun, Progress, activate, availability, lock_all, unlock_all};
use crate::remote::commands::{self, ADOPT_SUFFIX, HookEnv};
use crate::remote::{AnyTransport, Mode, Transport};
use crate::report::{Status, Summary};
use crate::signals::Cancel;
use crate::steps::Steps;

#[path = "adopt_probe.rs"]
mod probing;
#[path = "adopt_rerun.rs"]
mod rerun;
pub use probing::{Probe, parse_probe};
use probing::{check, dry_run, ecosystem_file};
use rerun::{kept, resume};

pub async fn command(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<()> {
    let file = ecosystem_file(config)?;
    let l = super::backups::layout(config);
    let started_at = chrono::Utc::now();
    let id = ReleaseId::from_time(started_at);
    if inv.dry_run {
        return dry_run(config, inv, vars, &l, &file, id).await;
    }
    let cancel = Cancel::install();
    let started = Instant::now();
    let fleet = super::connect(config, inv, vars).await?;
    let http = health::client()?;
    let steps = Steps::new(&cancel, Vec::new()).with_timeouts(config.env.timeouts.clone());
    let github = crate::github::Reporter::new(inv)?;
    let ctx = Ctx {
        config,
        inv,
        layout: l,
        steps: &steps,
        http: &http,
        owner: LockOwner::new(inv, "adopt", config.env.name.as_str(), None, started_at),
    };
    let mut hosts: Vec<HostRun<&AnyTransport>> =
        fleet.borrowed().into_iter().map(|(s, t)| HostRun::new(s, t)).collect();
    let mut found = Found::default();
    let result = run(&ctx, &mut hosts, &file, id, &mut found).await;
    // The marker of an app without a known commit is no commit.
    let commit = result.as_ref().ok().filter(|r| r.as_str() != "adopted").cloned();
    let (status, message) = match &result {
        Ok(_) => (
            Status::Success,
            format!(
                "adopted: every host serves releases/{} from current, verified",
                served(&hosts).unwrap_or(id)
            ),
        ),
        Err(e) if e.kind == Kind::Refused && hosts.iter().all(|h| h.progress <= Progress::Locked) => {
            (Status::Refused, e.message.clone())
        }
        Err(e) => (Status::Failure, format!("adoption failed: {}", e.message)),
    };
    let summary = Summary {
        status,
        // Also when finishing failed after the verify (the hosts serve the release then), or
        // when a rerun finished an interrupted adoption (its release).
        release: served(&hosts).map(|c| c.to_string()),
        steps: steps.take(),
        checks: found.checks,
        warnings: found.warnings,
        availability: found.availability,
        message,
        ..Summary::begin(config, inv, "adopt", started_at)
    }
    .end(inv, commit.as_deref(), started.elapsed().as_secs_f64());
    finish(&ctx, &hosts, &summary, id).await;
    fleet.close().await;
    super::publish(&summary, inv, &github).await;
    result.map(|_| ())
}

/// Probes, locks, probes again under the lock, then adopts host after host. Returns the
/// revision the release got.
async fn run<T: Transport>(
    ctx: &Ctx<'_>,
    hosts: &mut [HostRun<T>],
    file: &str,
    id: ReleaseId,
    found: &mut Found,
) -> Result<String> {
    check(ctx, hosts, file).await?;
    lock_all(ctx, hosts).await?;
    let probes = check(ctx, hosts, file).await?;
    for (h, p) in hosts.iter().zip(&probes) {
        if p.adopted() {
            let t = p.target.as_deref().unwrap_or("?");
            found.warn(format!("{}: adopted already (current → {t}): skipped", h.name()));
        }
    }
    // Availability while the hosts are handed over, as during a deploy's activation (from the
    // runner, or with health_from = "host" on each host); reported, never failing the run.
    let window = availability::Window::open(ctx, hosts).await?;
    let (ts, mut views) = availability::views(hosts);
    let mut revision = String::new();
    let activation = async {
        revision = each(ctx, &mut views, &probes, file, id, found).await?;
        Ok(())
    };
    let (report, adopted) = window.during(ctx, &ts, activation, false).await;
    let live: Vec<_> = views.iter().map(|v| v.state.current).collect();
    let progress = availability::progress(&views);
    drop((ts, views));
    availability::settle(hosts, progress);
    for (h, current) in hosts.iter_mut().zip(live) {
        h.state.current = current;
    }
    found.availability = Some(report);
    adopted.map(|()| revision)
}

/// Adopts host after host; the first failure is put back on its host and ends the run.
async fn each<T: Transport>(
    ctx: &Ctx<'_>,
    hosts: &mut [HostRun<T>],
    probes: &[Probe],
    file: &str,
    id: ReleaseId,
    found: &mut Found,
) -> Result<String> {
    let (mut revision, mut done) = (String::new(), Vec::new());
    for (h, p) in hosts.iter_mut().zip(probes) {
        if p.adopted() {
            h.state.current = p.current_release();
            continue;
        }
        if p.unfinished(&ctx.layout) {
            resume(ctx, h, p, found).await?;
            revision = p.current_revision.clone().unwrap_or_else(|| "adopted".into());
            done.push(h.name());
            continue;
        }
        let mut stage = Stage::Nothing;
        match one(ctx, h, p, file, id, &mut stage, found).await {
            Ok(()) => {
                h.state.current = Some(id);
                revision = p.revision();
            }
            Err(e) if stage == Stage::Done => {
                h.state.current = Some(id);
                return Err(e);
            }
            Err(e) => {
                let mut e = undo(ctx, h, p, id, stage, e).await;
                if !done.is_empty() {
                    let _ = write!(
                        e.message,
                        "; adopted before (kept, serving releases/{id}): {}",
                        done.join(", ")
                    );
                }
                return Err(e);
            }
        }
        done.push(h.name());
    }
    Ok(revision)
}

/// What the run found on its way, for the summary.
#[derive(Default)]
pub(super) struct Found {
    checks: Vec<health::CheckResult>,
    warnings: Vec<String>,
    availability: Option<crate::availability::Report>,
}

impl Found {
    pub(super) fn warn(&mut self, w: String) {
        if !self.warnings.contains(&w) {
            crate::ui::warn(&w);
            self.warnings.push(w);
        }
    }
}

/// How far the adoption got on a host: what undo takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Nothing,
    /// The release, `current` and shared files may exist.
    Linked,
    /// The temporary copy may run.
    Temporary,
    /// The old processes may be gone (their snapshot is on the host).
    Retired,
    /// Verified: the app runs from `current`; what is left is tidying up.
    Done,
}

/// The release beside the app (hard links), its shared files, and `current`.
async fn lay_out<T: Transport>(ctx: &Ctx<'_>, h: &mut HostRun<T>, id: ReleaseId, revision: &str) -> Result<()> {
    let (l, name) = (&ctx.layout, h.name());
    h.progress = Progress::Prepared;
    let link = commands::adopt_link(l, id, revision, &ctx.config.env.linked_files);
    let what = format!("{} → releases/{id} (hard links)", l.deploy_dir);
    ctx.steps
        .run(&name, "adopt", &what, h.exec(&link, Mode::Capture, "adopt"))
        .await?;
    let switch = commands::switch(l, id, None);
    let what = format!("current → releases/{id}");
    h.progress = Progress::Switched;
    ctx.steps
        .run(&name, "switch", &what, h.exec(&switch, Mode::Capture, "switch"))
        .await?;
    Ok(())
}

async fn one<T: Transport>(
    ctx: &Ctx<'_>,
    h: &mut HostRun<T>,
    p: &Probe,
    file: &str,
    id: ReleaseId,
    stage: &mut Stage,
    found: &mut Found,
) -> Result<()> {
    let (l, env, name) = (&ctx.layout, &ctx.config.env, h.name());
    let revision = p.revision();
    *stage = Stage::Linked;
    lay_out(ctx, h, id, &revision).await?;
    let hook = HookEnv {
        environment: ctx.env_name(),
        release: id,
        revision: &revision,
    };
    for w in crate::ecosystem::lint_host(&h.t, l, env.reload.as_deref(), &hook, env.drain_timeout).await {
        found.warn(w);
    }
    let drain = env.drain.then_some(env.drain_timeout);
    let wait = env.health_timeout.as_millis();
    *stage = Stage::Temporary;
    if p.direct().is_none() {
        let temporary = commands::adopt_start(l, file, &hook, drain, ADOPT_SUFFIX, wait);
        let what = p.temporary().join(", ");
        let run = h.exec(&temporary, Mode::Capture, "start the temporary copy");
        ctx.steps.run(&name, "start temporary", &what, run).await?;
    }
    *stage = Stage::Retired;
    let what = format!("{} old process(es) running from {}", p.old.len(), l.deploy_dir);
    let retire = commands::adopt_retire(l);
    let run = h.exec(&retire, Mode::Capture, "delete the old processes");
    ctx.steps.run(&name, "retire old", &what, run).await?;
    let start = commands::adopt_start(l, file, &hook, drain, "", wait);
    let what = p.names("").join(", ");
    let run = h.exec(&start, Mode::Capture, "start from current");
    ctx.steps.run(&name, "start", &what, run).await?;
    verify_host(ctx, h, id, &revision, found).await?;
    *stage = Stage::Done;
    finish_host(ctx, h, id, &[], found).await
}

/// Verifies the host as a deploy does (health, smoke, every worker in the release).
pub(super) async fn verify_host<T: Transport>(
    ctx: &Ctx<'_>,
    h: &mut HostRun<T>,
    id: ReleaseId,
    revision: &str,
    found: &mut Found,
) -> Result<()> {
    let (env, name) = (&ctx.config.env, h.name());
    let tool = match (env.health_from_host, h.http_tool) {
        (true, None) => Some(crate::health_host::detect(&h.t).await?),
        (_, tool) => tool,
    };
    let url = health::url_for(&env.health_url, &h.spec);
    let v = ctx
        .steps
        .run(&name, "verify", &url, activate::verify(ctx, h, id, revision, tool))
        .await?;
    found.checks.extend(v.checks);
    Ok(())
}

/// Deletes the temporary copy (`ids`: those a rerun's probe found besides the recorded ones),
/// `pm2 save`, removes the originals the release holds (warning about any kept).
pub(super) async fn finish_host<T: Transport>(
    ctx: &Ctx<'_>,
    h: &mut HostRun<T>,
    id: ReleaseId,
    ids: &[String],
    found: &mut Found,
) -> Result<()> {
    let (l, name) = (&ctx.layout, h.name());
    let tidy = commands::adopt_finish(l, id, ids, &ctx.config.env.linked_files);
    let what = "delete the temporary copy, pm2 save, remove the originals";
    ctx.steps
        .run_uncancelled(&name, "finish", what, h.exec(&tidy, Mode::Capture, "finish"))
        .await
        .map(|out| {
            if let Some(w) = kept(&out.stdout, &format!("{}/.tj-deploy/adopted-{id}", l.deploy_dir)) {
                found.warn(format!("{name}: {w}"));
            }
        })
        .map_err(|e| {
            Error::failed(format!(
                "{e}; the app serves releases/{id} from current (verified): run `setup --adopt` again to finish (delete the *{ADOPT_SUFFIX} copy, pm2 save, remove the originals from {})",
                l.deploy_dir
            ))
        })
}

/// Puts the host back as it was before the adoption; the error says what happened and what
/// the host is left with.
async fn undo<T: Transport>(
    ctx: &Ctx<'_>,
    h: &mut HostRun<T>,
    p: &Probe,
    id: ReleaseId,
    stage: Stage,
    e: Error,
) -> Error {
    let (l, name) = (&ctx.layout, h.name());
    let wait = ctx.config.env.health_timeout.as_millis();
    let mut failed = Vec::new();
    if stage >= Stage::Temporary {
        let s = commands::adopt_undo_pm2(l, id, wait);
        let what = "the old app back, the temporary copy deleted";
        if let Err(e) = ctx
            .steps
            .run_uncancelled(&name, "undo pm2", what, h.exec(&s, Mode::Capture, "undo pm2"))
            .await
        {
            failed.push(e.message);
        }
    }
    let linked = &ctx.config.env.linked_files;
    let s = commands::adopt_undo_files(l, id, linked, &p.to_share(), !p.shared);
    let mut kept_note = None;
    match ctx
        .steps
        .run_uncancelled(
            &name,
            "undo files",
            "releases/ and current removed",
            h.exec(&s, Mode::Capture, "undo files"),
        )
        .await
    {
        Ok(out) => kept_note = kept(&out.stdout, &format!("{}/.tj-deploy/adopted-{id}", l.deploy_dir)),
        Err(e) => failed.push(e.message),
    }
    h.progress = Progress::Locked;
    let d = &l.deploy_dir;
    let mut msg = e.message.clone();
    match failed.is_empty() {
        true => {
            let _ = write!(
                msg,
                "; put back as it was: the old app serves from {d} again, releases/ and current are removed"
            );
            if let Some(k) = kept_note {
                let _ = write!(msg, " ({k})");
            }
        }
        false => {
            let _ = write!(
                msg,
                "; putting it back FAILED too ({}): check `pm2 list` and {d} on {name}",
                failed.join("; ")
            );
        }
    }
    Error { message: msg, ..e }
}

/// The newest release a host serves after the run.
fn served<T>(hosts: &[HostRun<T>]) -> Option<ReleaseId> {
    hosts.iter().filter_map(|h| h.state.current).max()
}

/// Logs the adoption on every host it locked, then unlocks.
async fn finish<T: Transport>(ctx: &Ctx<'_>, hosts: &[HostRun<T>], summary: &Summary, id: ReleaseId) {
    if summary.status != Status::Refused {
        let markdown = summary.to_markdown();
        for h in hosts.iter().filter(|h| h.progress > Progress::Untouched) {
            let fields = json!({
                "release": h.state.current.map(|c| c.to_string()),
                "adopted": h.state.current == Some(id),
            });
            let line = crate::journal::line(summary, &id.to_string(), h.t.name(), fields);
            crate::journal::record(&h.t, &ctx.layout, &line, &markdown).await;
        }
    }
    unlock_all(ctx, hosts).await;
}
