//! A rollback's prepare and database phases: the safety backup of what is live on each host,
//! the backup's release back on disk (from its package, dependencies reused) when it was
//! pruned, and, once on the database host, a safety dump then the backup's dump restored.

use std::collections::BTreeMap;

use crate::backup;
use crate::config::ReleaseId;
use crate::error::{Error, Result};
use crate::pipeline::rollback::{Rollback, Target};
use crate::pipeline::{Ctx, HostRun, Progress};
use crate::plan::{Phase, StepKind};
use crate::remote::commands::{self, HookEnv};
use crate::remote::{Mode, Transport};
use crate::ui;

/// One host's prepare steps: the safety backup, then the release from the backup if pruned.
pub(super) async fn prepare<T: Transport>(
    ctx: &Ctx<'_>,
    r: &Rollback<'_>,
    h: &mut HostRun<T>,
    safety: ReleaseId,
    targets: &BTreeMap<String, Target>,
) -> Result<()> {
    let (name, l) = (h.name(), &ctx.layout);
    let Some(target) = targets.get(&name) else {
        return Ok(());
    };
    // The safety backup and a restored release are this run's: refusals after this point are
    // failures (the host is no longer untouched).
    h.progress = Progress::Prepared;
    for step in r.plan.phase(Phase::Prepare) {
        let label = step.kind.name();
        match step.kind {
            StepKind::SafetyBackup => {
                let req = backup::Request {
                    id: safety,
                    kind: "safety",
                    environment: ctx.env_name(),
                    live: h.previous().map(|p| (p.id, p.revision.clone())),
                    database: false,
                    deploying: target.commit.clone(),
                    linked_files: &ctx.config.env.linked_files,
                };
                ctx.steps
                    .run(&name, label, &l.backup(safety), backup::take_app(&h.t, l, &req))
                    .await?;
            }
            StepKind::Restore => restore_release(ctx, h, target).await?,
            other => {
                return Err(Error::failed(format!(
                    "{} is not a rollback prepare step",
                    other.name()
                )));
            }
        }
    }
    Ok(())
}

/// Puts the backup's release back on disk from its verified package when it was pruned.
async fn restore_release<T: Transport>(ctx: &Ctx<'_>, h: &HostRun<T>, target: &Target) -> Result<()> {
    let (name, l) = (h.name(), &ctx.layout);
    let label = StepKind::Restore.name();
    if h.state.release(target.release).is_some_and(|r| r.revision.is_some()) {
        ctx.steps
            .skipped(&name, label, &format!("release {} is on disk", target.release));
        return Ok(());
    }
    if h.state.release(target.release).is_some() {
        // An unfinished directory under that name: replace it with the backup's copy.
        let script = commands::remove(l, &[target.release], &[]);
        h.exec(&script, Mode::Capture, "remove unfinished release").await?;
    }
    let lf = &ctx.config.env.linked_files;
    let restore = backup::restore_release(&h.t, l, target.backup, &target.manifest, target.release, lf);
    let install = ctx.steps.run(&name, label, &l.release(target.release), restore).await?;
    // A package or a tree without node_modules: its dependencies come back as a deploy
    // installs them.
    if let (true, Some(cmd)) = (install, &ctx.config.env.install) {
        let rev = target.commit.clone().unwrap_or_default();
        let env = HookEnv {
            environment: ctx.env_name(),
            release: target.release,
            revision: &rev,
        };
        // Reused from the stored node_modules of the same lockfile when there: a rollback, even
        // to a pruned release, needs no package registry.
        let reuse = ctx.config.env.reuse_dependencies;
        let run = async {
            let o = crate::deps::install(&h.t, l, target.release, cmd, &env, reuse).await?;
            Ok(((), o.note()))
        };
        let installed = ctx.steps.run_noted(&name, "install", cmd, run).await;
        if installed.is_err() {
            // Never leave a complete-looking release without its dependencies.
            let _ = h
                .exec(&commands::remove(l, &[target.release], &[]), Mode::Capture, "remove")
                .await;
        }
        installed?;
    }
    Ok(())
}

/// The database once, on the database host, before any switch: a safety dump of it as it is,
/// then the backup's dump restored (announced: data written since is lost).
pub(super) async fn database<T: Transport>(
    ctx: &Ctx<'_>,
    r: &Rollback<'_>,
    h: &HostRun<T>,
    safety: ReleaseId,
    targets: &BTreeMap<String, Target>,
    began: &std::cell::Cell<bool>,
) -> Result<()> {
    let (name, l) = (h.name(), &ctx.layout);
    let Some(target) = targets.get(&name) else {
        return Ok(());
    };
    for step in r.plan.phase(Phase::Database) {
        let label = step.kind.name();
        match step.kind {
            StepKind::DatabaseBackup => {
                let detail = format!("{}/db.dump", l.backup(safety));
                let dump = backup::take_database(&h.t, l, safety, ctx.env_name());
                ctx.steps.run(&name, label, &detail, dump).await?;
            }
            StepKind::RestoreDatabase => {
                ui::warn(&format!(
                    "{name}: restoring the database from backup {} (taken {}): data written since then will be lost",
                    target.backup, target.manifest.created_at
                ));
                // From here a failure may be inside the restore's transaction.
                began.set(true);
                let restore = async {
                    let dropped = backup::restore_database(&h.t, l, target.backup, &target.manifest).await?;
                    Ok(((), dropped_note(&dropped)))
                };
                ctx.steps
                    .run_noted(&name, label, &l.backup(target.backup), restore)
                    .await?;
            }
            other => return Err(Error::failed(format!("{} is not a database step", other.name()))),
        }
    }
    Ok(())
}

/// What the restore dropped because the backup does not hold it (created after the backup).
fn dropped_note(dropped: &[String]) -> String {
    if dropped.is_empty() {
        return String::new();
    }
    format!("dropped what the backup does not hold: {}", dropped.join(", "))
}
