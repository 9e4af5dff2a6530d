//! A deploy's prepare phase on one host — everything users do not see yet: the app backup,
//! the upload, the extract (and the PM2 ecosystem lint in the new release), the dependencies.

use std::cell::RefCell;

use crate::backup;
use crate::config::{ReleaseId, Sha};
use crate::error::{Error, Result};
use crate::package::Package;
use crate::pipeline::deploy::Deploy;
use crate::pipeline::{Ctx, HostRun, Progress};
use crate::plan::{Phase, StepKind};
use crate::remote::commands::{self, HookEnv};
use crate::remote::{Mode, Transport};
use crate::ui;

/// Everything users do not see yet, on one host: the planned prepare steps in order.
pub(super) async fn prepare<T: Transport>(
    ctx: &Ctx<'_>,
    d: &Deploy<'_>,
    h: &mut HostRun<T>,
    id: ReleaseId,
    warnings: &RefCell<Vec<String>>,
) -> Result<()> {
    let (name, l, env) = (h.name(), &ctx.layout, &ctx.config.env);
    // From here on the host may hold this run's backup and release: undo takes them back.
    h.progress = Progress::Prepared;
    for step in d.plan.phase(Phase::Prepare) {
        let label = step.kind.name();
        match step.kind {
            StepKind::Backup => {
                let req = backup::Request {
                    id,
                    kind: "pre-deploy",
                    environment: ctx.env_name(),
                    live: h.previous().map(|p| (p.id, p.revision.clone())),
                    database: false,
                    deploying: Some(d.sha.to_string()),
                    linked_files: &env.linked_files,
                };
                let taken = ctx
                    .steps
                    .run(&name, label, &l.backup(id), backup::take_app(&h.t, l, &req))
                    .await?;
                warnings.borrow_mut().extend(taken.warnings);
            }
            StepKind::Upload if h.state.package_present => ctx.steps.skipped(&name, label, "already on the host"),
            StepKind::Upload => upload(ctx, d.package, h).await?,
            StepKind::Extract => {
                let script = commands::extract(l, &d.package.sha256, id, &env.linked_files);
                ctx.steps
                    .run(&name, label, &l.release(id), h.exec(&script, Mode::Capture, label))
                    .await?;
                lint(ctx, h, id, d.sha, warnings).await;
            }
            StepKind::Install => install(ctx, h, id, d.sha).await?,
            other => return Err(Error::failed(format!("{} is not a prepare step", other.name()))),
        }
    }
    Ok(())
}

/// The PM2 ecosystem lint, with the host's node in the new release before anything users see
/// changes: its findings are warnings in every summary, said once.
async fn lint<T: Transport>(ctx: &Ctx<'_>, h: &HostRun<T>, id: ReleaseId, sha: &Sha, warnings: &RefCell<Vec<String>>) {
    let env = HookEnv {
        environment: ctx.env_name(),
        release: id,
        revision: sha.as_str(),
    };
    let reload = ctx.config.env.reload.as_deref();
    for w in crate::ecosystem::lint_host(&h.t, &ctx.layout, reload, &env, ctx.config.env.drain_timeout).await {
        if !warnings.borrow().contains(&w) {
            ui::warn(&w);
            warnings.borrow_mut().push(w);
        }
    }
}

/// Dependencies: the stored node_modules of the same lockfile, node and command hard-linked
/// in (`reuse_dependencies`), else `install`, stored for the next release.
async fn install<T: Transport>(ctx: &Ctx<'_>, h: &HostRun<T>, id: ReleaseId, sha: &Sha) -> Result<()> {
    let Some(cmd) = ctx.config.env.install.clone() else {
        return Ok(());
    };
    let env = HookEnv {
        environment: ctx.env_name(),
        release: id,
        revision: sha.as_str(),
    };
    let reuse = ctx.config.env.reuse_dependencies;
    let run = async {
        let o = crate::deps::install(&h.t, &ctx.layout, id, &cmd, &env, reuse).await?;
        Ok(((), o.note()))
    };
    ctx.steps
        .run_noted(&h.name(), StepKind::Install.name(), &cmd, run)
        .await
}

async fn upload<T: Transport>(ctx: &Ctx<'_>, package: &Package, h: &HostRun<T>) -> Result<()> {
    let name = h.name();
    let bar = ui::progress(package.size, &format!("upload [{name}]"));
    let progress = |n: u64| bar.inc(n);
    let script = commands::upload(&ctx.layout, &package.sha256);
    let what = format!("{name}: upload");
    let detail = format!("{} ({} bytes)", package.name, package.size);
    ctx.steps
        .run(&name, StepKind::Upload.name(), &detail, async {
            h.t.run_with_file(&script, &package.path, &progress).await?.check(&what)
        })
        .await?;
    bar.finish_and_clear();
    Ok(())
}

/// Runs a configured command (`install`, `migrate`) in the new release; returns its stdout.
pub(super) async fn hook<T: Transport>(
    ctx: &Ctx<'_>,
    h: &HostRun<T>,
    id: ReleaseId,
    sha: &Sha,
    label: &str,
    cmd: &str,
) -> Result<String> {
    let hook_env = HookEnv {
        environment: ctx.env_name(),
        release: id,
        revision: sha.as_str(),
    };
    let script = commands::hook(&ctx.layout, label, cmd, &hook_env);
    let out = ctx
        .steps
        .run(
            &h.name(),
            label,
            cmd,
            h.exec(&script, Mode::Stream, &format!("{label} ({cmd})")),
        )
        .await?;
    Ok(out.stdout)
}
