//! Making a release live on one host: switch `current`, reload the app from it, verify it
//! serves the expected revision. One function for deploy, undo and rollback. A deploy's or
//! rollback's verification also watches the PM2 restart counts for a crash loop ([`crashloop`]).

use crate::config::ReleaseId;
use crate::error::{Error, Result};
use crate::health::{self, Verification};
use crate::pipeline::{Ctx, HostRun, Progress, crashloop};
use crate::plan::StepKind;
use crate::remote::commands::{self, HookEnv};
use crate::remote::{Mode, Transport};

/// Whether a signal may stop the activation. Undo must finish whatever happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Deploy or rollback: write `REVISION` first when `complete` is set (a new release).
    Forward { complete: bool },
    /// Putting back what was live: not cancelled.
    Undo,
}

/// Switches `current` to `release`, reloads and verifies `revision` answers.
pub async fn activate<T: Transport>(
    ctx: &Ctx<'_>,
    h: &mut HostRun<T>,
    release: ReleaseId,
    revision: &str,
    why: Why,
) -> Result<Verification> {
    let name = h.name();
    let l = &ctx.layout;
    let env = &ctx.config.env;
    let write = matches!(why, Why::Forward { complete: true }).then_some(revision);
    let script = commands::switch(l, release, write);
    let detail = match why {
        Why::Undo => format!("current → releases/{release} (back)"),
        Why::Forward { .. } => format!("current → releases/{release}"),
    };
    if why != Why::Undo {
        ctx.steps.cancel().check("switch")?;
    }
    // Not cancelled midway, like the lock: the switch is one rename.
    let switched = ctx
        .steps
        .run_uncancelled(
            &name,
            StepKind::Switch.name(),
            &detail,
            h.exec(&script, Mode::Capture, "switch"),
        )
        .await;
    if why != Why::Undo {
        // A switch that failed (say, the connection dropped) may still have happened: treat it
        // as done so the failure path switches back explicitly.
        h.progress = Progress::Switched;
    }
    switched?;
    if let Some(cmd) = &env.reload {
        let hook_env = HookEnv {
            environment: ctx.env_name(),
            release,
            revision,
        };
        let script = match env.drain {
            true => commands::reload_drained(l, cmd, &hook_env, env.drain_timeout),
            false => commands::reload(l, cmd, &hook_env),
        };
        let what = format!("reload ({cmd})");
        let run = h.exec(&script, Mode::Stream, &what);
        match why {
            Why::Undo => {
                ctx.steps
                    .run_uncancelled(&name, StepKind::Reload.name(), cmd, run)
                    .await?
            }
            Why::Forward { .. } => ctx.steps.run(&name, StepKind::Reload.name(), cmd, run).await?,
        };
    }
    // Right after the reload, which counted its own restart of each worker. A new release
    // (`complete`: a deploy) waits for the settle; a rollback (an existing release) does not.
    let restarts = match why {
        Why::Forward { complete } if env.reload.is_some() => crashloop::read(ctx, h).await.map(|c| (c, complete)),
        _ => None,
    };
    let url = health::url_for(&env.health_url, &h.spec);
    let tool = http_tool(ctx, h).await?;
    let check = verify_counted(ctx, h, release, revision, tool, restarts);
    match why {
        Why::Undo => {
            ctx.steps
                .run_uncancelled(&name, StepKind::Verify.name(), &url, check)
                .await
        }
        Why::Forward { .. } => ctx.steps.run(&name, StepKind::Verify.name(), &url, check).await,
    }
}

/// [`verify`], and when `restarts` were read after the reload, the crash-loop check: they are
/// read again once verification ended (a deploy at least [`crashloop::SETTLE`] later; a
/// rollback at once, see [`crashloop`]).
async fn verify_counted<T: Transport>(
    ctx: &Ctx<'_>,
    h: &HostRun<T>,
    release: ReleaseId,
    revision: &str,
    tool: Option<commands::HttpTool>,
    restarts: Option<(crashloop::Counts, bool)>,
) -> Result<Verification> {
    let since = std::time::Instant::now();
    let mut v = verify(ctx, h, release, revision, tool).await?;
    if let Some((before, settle)) = &restarts {
        v.warnings = crashloop::after(ctx, h, before, since, *settle).await;
    }
    Ok(v)
}

/// With `health_from = "host"`, the host's HTTP client, detected once per run.
async fn http_tool<T: Transport>(ctx: &Ctx<'_>, h: &mut HostRun<T>) -> Result<Option<commands::HttpTool>> {
    if !ctx.config.env.health_from_host {
        return Ok(None);
    }
    if h.http_tool.is_none() {
        h.http_tool = Some(crate::health_host::detect(&h.t).await?);
    }
    Ok(h.http_tool)
}

/// Health for `revision` and, when the answer carries no revision but a reload ran, that every
/// PM2 worker runs in `release`. Also what `restart` verifies with.
pub async fn verify<T: Transport>(
    ctx: &Ctx<'_>,
    h: &HostRun<T>,
    release: ReleaseId,
    revision: &str,
    tool: Option<commands::HttpTool>,
) -> Result<Verification> {
    let env = &ctx.config.env;
    let v = match tool {
        Some(tool) => crate::health_host::verify(&h.t, tool, env, &h.spec, revision).await?,
        None => health::verify(ctx.http, env, &h.spec, revision).await?,
    };
    if !v.revision_checked && ctx.config.env.reload.is_some() {
        workers_run(ctx, h, release).await?;
    }
    Ok(v)
}

/// When the health answer carries no revision, the old code could be the one answering: check
/// over SSH that every PM2 worker under `deploy_dir` runs in `release` (`/proc/<pid>/cwd`).
async fn workers_run<T: Transport>(ctx: &Ctx<'_>, h: &HostRun<T>, release: ReleaseId) -> Result<()> {
    let out = h
        .exec(
            &commands::pm2_worker_dirs(&ctx.layout),
            Mode::Capture,
            "list PM2 workers",
        )
        .await?;
    let workers: Vec<(&str, &str)> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("cwd ")?.split_once(' '))
        .collect();
    let name = h.name();
    if workers.is_empty() {
        return Err(Error::failed(format!(
            "{name}: verify: the health answer carries no revision and no PM2 worker runs under {}, so nothing shows release {release} serves (report `revision` in the health answer)",
            ctx.layout.deploy_dir
        )));
    }
    let want = format!("/releases/{release}");
    let stale: Vec<String> = workers
        .iter()
        .filter(|(_, dir)| !dir.ends_with(&want))
        .map(|(pid, dir)| format!("pid {pid} in {dir}"))
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    Err(Error::failed(format!(
        "{name}: verify: the health answer carries no revision and PM2 worker(s) still run outside releases/{release}: {}",
        stale.join(", ")
    )))
}
