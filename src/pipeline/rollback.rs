//! The manual rollback, in the deploy's phases: lock and inspect every host and choose one
//! backup for all; prepare (safety backup of what is live, restore the backup's release when
//! it was pruned); the database once, on the database host (safety dump, then restore) before
//! any switch; activate in batches. Releases left are marked bad only once the rolled-back one
//! verified; a failure puts every switched host back on what was live before the rollback.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use crate::backup;
use crate::config::{HostSpec, ReleaseId, RollbackTarget, Sha};
use crate::error::{Error, Kind, Result};
use crate::health::CheckResult;
use crate::pipeline::activate::{Why, activate};
pub use crate::pipeline::target::{Target, choose};
use crate::pipeline::{
    Ctx, HostRun, Progress, availability, each_host, in_batches, lock_all, restore, undo, unlock_all,
};
use crate::plan::{Plan, StepKind};
use crate::remote::{Mode, Transport, commands};
use crate::report::{Status, Summary};
use crate::ui;

/// What the user asked for.
pub struct Rollback<'a> {
    pub to: RollbackTarget,
    pub restore_database: bool,
    pub plan: &'a Plan,
    pub started: Instant,
    pub started_at: chrono::DateTime<chrono::Utc>,
}

/// Everything the run decided and did.
struct Outcome {
    availability: Option<crate::availability::Report>,
    safety: ReleaseId,
    targets: BTreeMap<String, Target>,
    checks: RefCell<Vec<CheckResult>>,
    /// Said in the summary: PM2 workers restarting during verification.
    warnings: RefCell<Vec<String>>,
    /// The database restore committed (it runs in one transaction: until then nothing changed).
    database_restored: bool,
    /// The database restore step started (before it, only the safety dump read the database).
    restore_began: std::cell::Cell<bool>,
}

/// Rolls every host back; always returns a summary, the error (if any) is inside it.
pub async fn run<T: Transport>(
    ctx: &Ctx<'_>,
    r: Rollback<'_>,
    hosts: Vec<(HostSpec, T)>,
    github: &mut crate::github::Reporter,
) -> (Summary, Option<Error>) {
    let mut hosts: Vec<HostRun<T>> = hosts.into_iter().map(|(s, t)| HostRun::new(s, t)).collect();
    let mut out = Outcome {
        availability: None,
        safety: ReleaseId::from_time(r.started_at),
        targets: BTreeMap::new(),
        checks: RefCell::new(Vec::new()),
        warnings: RefCell::new(Vec::new()),
        database_restored: false,
        restore_began: std::cell::Cell::new(false),
    };
    let result = phases(ctx, &r, &mut hosts, &mut out, github).await;
    let (status, message, error) = conclude(ctx, &r, &mut hosts, &out, result).await;
    let target = hosts.first().and_then(|h| out.targets.get(&h.name())).cloned();
    let before = hosts.first().and_then(|h| h.state.current).map(|c| c.to_string());
    let target_release = target.as_ref().map(|t| t.release.to_string());
    // The release output names what is live: the target, or what a failed rollback put back.
    let (release, failed_release) = match status {
        Status::Success => (target_release, None),
        Status::Refused => (None, None),
        _ => (before.clone(), target_release),
    };
    let summary = Summary {
        availability: out.availability,
        status,
        release,
        failed_release,
        backup: (status != Status::Refused).then(|| out.safety.to_string()),
        previous_release: before,
        steps: ctx.steps.take(),
        checks: out.checks.take(),
        // The rollback reloads as a deploy does: the same drain that cannot reach the workers.
        warnings: crate::drain::fallback_warning(ctx.config.env.reload.as_deref(), ctx.config.env.drain)
            .into_iter()
            .chain(out.warnings.take())
            .collect(),
        message,
        ..Summary::begin(ctx.config, ctx.inv, "rollback", r.started_at)
    }
    .end(
        ctx.inv,
        target.as_ref().and_then(|t| t.commit.as_deref()),
        r.started.elapsed().as_secs_f64(),
    );
    if status != Status::Refused {
        let keep = (status == Status::Success)
            .then(|| target.as_ref().map(|t| t.release))
            .flatten();
        super::prune::after_run(ctx, &hosts, keep).await;
    }
    finish(ctx, &r, &hosts, &out, &summary).await;
    (summary, error)
}

async fn phases<T: Transport>(
    ctx: &Ctx<'_>,
    r: &Rollback<'_>,
    hosts: &mut [HostRun<T>],
    out: &mut Outcome,
    github: &mut crate::github::Reporter,
) -> Result<()> {
    lock_all(ctx, hosts).await?;
    inspect(ctx, r, hosts, out).await?;
    availability::http_clients(ctx, hosts).await?;
    start_deployment(ctx, hosts, out, github).await;
    let parallel = ctx.config.env.parallel;
    let (safety, targets) = (out.safety, &out.targets);
    each_host(hosts, parallel, |h| restore::prepare(ctx, r, h, safety, targets)).await?;
    let db = ctx.config.env.database_host.min(hosts.len().saturating_sub(1));
    restore::database(ctx, r, &hosts[db], out.safety, &out.targets, &out.restore_began).await?;
    out.database_restored = r.restore_database;
    let window = availability::Window::open(ctx, hosts).await?;
    let (ts, mut views) = availability::views(hosts);
    let (checks, warnings) = (&out.checks, &out.warnings);
    let activated = in_batches(&mut views, parallel, |h| async move {
        let Some(t) = targets.get(&h.name()) else { return Ok(()) };
        let revision = t.commit.clone().unwrap_or_default();
        let v = activate(ctx, h, t.release, &revision, Why::Forward { complete: false }).await?;
        checks.borrow_mut().extend(v.checks);
        crate::pipeline::crashloop::decide(ctx, v.warnings, warnings, false)
    });
    let (report, verdict) = window.during(ctx, &ts, activated, false).await;
    let progress = availability::progress(&views);
    availability::settle(hosts, progress);
    out.availability = Some(report);
    let commits: std::collections::BTreeSet<_> = out.targets.values().map(|t| t.commit.clone()).collect();
    let revision = (commits.len() == 1)
        .then(|| commits.into_iter().next().flatten())
        .flatten();
    if verdict.is_ok()
        && let Some(c) = crate::health_host::public_check(ctx.http, &ctx.config.env, revision.as_deref()).await
    {
        out.checks.borrow_mut().push(c);
    }
    verdict
}

/// Reads every host and resolves the target on the first; every other host must hold the
/// same backup.
async fn inspect<T: Transport>(
    ctx: &Ctx<'_>,
    r: &Rollback<'_>,
    hosts: &mut [HostRun<T>],
    out: &mut Outcome,
) -> Result<()> {
    let l = &ctx.layout;
    let mut to = r.to;
    let db = ctx.config.env.database_host.min(hosts.len().saturating_sub(1));
    let db_host = hosts.get(db).map(|h| h.name());
    for h in hosts.iter_mut() {
        let name = h.name();
        let read = async {
            Ok((
                crate::state::inspect(&h.t, l, None).await?,
                backup::manifests(&h.t, l).await?,
            ))
        };
        let (state, manifests) = ctx.steps.run(&name, StepKind::Inspect.name(), "", read).await?;
        let target = choose(&name, to, &state, &manifests)?;
        to = RollbackTarget::Id(target.backup);
        if r.restore_database && Some(&name) == db_host.as_ref() && target.manifest.file("db.dump").is_none() {
            return Err(crate::error::Error::invalid(format!(
                "restore-database: backup {} on {name} (the database host) holds no db.dump; nothing was changed",
                target.backup
            )));
        }
        if let Some(newest) = state.newest_id() {
            while out.safety <= newest {
                out.safety = out.safety.next();
            }
        }
        let commit = target
            .commit
            .as_deref()
            .map(|c| crate::ui::prefix(c, 7))
            .unwrap_or("unknown");
        ui::info(&format!(
            "{name}: rolling back to backup {} → release {} (commit {commit})",
            target.backup, target.release
        ));
        h.state = state;
        out.targets.insert(name, target);
    }
    Ok(())
}

/// A rollback is a deployment of the commit it restores.
async fn start_deployment<T: Transport>(
    ctx: &Ctx<'_>,
    hosts: &[HostRun<T>],
    out: &Outcome,
    github: &mut crate::github::Reporter,
) {
    let Some(t) = hosts.first().and_then(|h| out.targets.get(&h.name())) else {
        return;
    };
    let Some(sha) = t.commit.as_deref().and_then(|c| Sha::parse("commit", c).ok()) else {
        return;
    };
    let release = t.release.to_string();
    let description = format!("tj-deploy rollback to {} (backup {})", sha.short(), t.backup);
    let request = crate::github::report::DeploymentRequest {
        sha: &sha,
        environment: ctx.env_name(),
        production: ctx.env_name() == "production",
        marker: "",
        release: Some(&release),
        description: &description,
    };
    github.start_deployment(ctx.inv, &request).await;
}

/// Marks what was left bad once the rollback verified, or puts every switched host back.
async fn conclude<T: Transport>(
    ctx: &Ctx<'_>,
    r: &Rollback<'_>,
    hosts: &mut [HostRun<T>],
    out: &Outcome,
    result: Result<()>,
) -> (Status, String, Option<Error>) {
    let safety = out.safety;
    let env_name = ctx.env_name();
    match result {
        Ok(()) => {
            mark_left_bad(ctx, hosts, out).await;
            let t = hosts.first().and_then(|h| out.targets.get(&h.name()));
            let msg = format!(
                "release {} (commit {}) from backup {} is serving; the state before is saved in backup {safety}{}",
                t.map(|t| t.release.to_string()).unwrap_or_default(),
                t.and_then(|t| t.commit.as_deref())
                    .map(|c| crate::ui::prefix(c, 7))
                    .unwrap_or("unknown"),
                t.map(|t| t.backup.to_string()).unwrap_or_default(),
                if r.restore_database {
                    "; the database was restored"
                } else {
                    ""
                }
            );
            (Status::Success, msg, None)
        }
        Err(e) if matches!(e.kind, Kind::Refused | Kind::Invalid) && super::deploy::untouched(hosts) => {
            (Status::Refused, e.message.clone(), Some(e))
        }
        Err(e) if !hosts.iter().any(|h| h.progress == Progress::Switched) => {
            let msg = format!(
                "rollback failed before switching anything: {}.{}",
                e.message,
                database_note(ctx, r, hosts, safety, out)
            );
            (Status::Failure, msg.clone(), Some(Error::failed(msg)))
        }
        Err(e) => {
            let results = futures_util::future::join_all(
                hosts
                    .iter_mut()
                    .filter(|h| h.progress == Progress::Switched)
                    .map(|h| async move { Some(undo::back_to_previous(ctx, h).await) }),
            )
            .await;
            let back = match undo::collect(results) {
                Ok(notes) => format!("Put back what was live before the rollback: {notes}"),
                Err(why) => format!("Putting back what was live ALSO failed: {why}"),
            };
            let db = database_note(ctx, r, hosts, safety, out);
            let msg = format!(
                "rollback failed: {}. {back}{db} The state before this rollback is saved in backup {safety} (`tj-deploy rollback -e {env_name} --to {safety}`).",
                e.message
            );
            (Status::Failure, msg.clone(), Some(Error::failed(msg)))
        }
    }
}

/// Where the database stands after a failed rollback that was to restore it.
fn database_note<T: Transport>(
    ctx: &Ctx<'_>,
    r: &Rollback<'_>,
    hosts: &[HostRun<T>],
    safety: ReleaseId,
    out: &Outcome,
) -> String {
    if !r.restore_database {
        return String::new();
    }
    if let Some(note) = unfinished_note(out.restore_began.get(), out.database_restored) {
        return note.into();
    }
    let db = ctx.config.env.database_host.min(hosts.len().saturating_sub(1));
    let host = hosts.get(db).map(|h| h.name()).unwrap_or_default();
    format!(
        " The database may already hold the backup's data while the apps run the release they ran before: its state before this rollback is the dump in backup {safety} on {host}; put it back with `tj-deploy rollback -e {} --to {safety} --restore-database`.",
        ctx.env_name()
    )
}

/// The note when the restore did not commit: it never started (the failure came at prepare
/// or the safety dump), or it ran in one transaction that did not commit.
fn unfinished_note(began: bool, restored: bool) -> Option<&'static str> {
    match (began, restored) {
        (_, true) => None,
        (false, false) => Some(" The database was not touched: the failure came before its restore started."),
        // It either committed and said so, or nothing changed, unless the connection was
        // lost at the moment it committed.
        (true, false) => Some(
            " The database restore did not finish: it runs in one transaction, so the database is as it was before this rollback (unless the connection was lost as it committed).",
        ),
    }
}

/// Marks the release each host left as bad, after the rolled-back one verified.
async fn mark_left_bad<T: Transport>(ctx: &Ctx<'_>, hosts: &[HostRun<T>], out: &Outcome) {
    for h in hosts {
        let (Some(left), Some(t)) = (h.state.current, out.targets.get(&h.name())) else {
            continue;
        };
        if left == t.release {
            continue;
        }
        let why = json!({
            "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "by": ctx.inv.actor,
            "reason": format!("rolled back to backup {} (release {})", t.backup, t.release),
        });
        if let Err(e) = h
            .exec(
                &commands::mark_bad(&ctx.layout, left, &why.to_string()),
                Mode::Capture,
                "mark bad",
            )
            .await
        {
            ui::warn(&e.message);
        }
    }
}

/// Logs the rollback on every host it locked (a refused one leaves no trace), then unlocks.
async fn finish<T: Transport>(ctx: &Ctx<'_>, r: &Rollback<'_>, hosts: &[HostRun<T>], out: &Outcome, summary: &Summary) {
    if summary.status != Status::Refused {
        let markdown = summary.to_markdown();
        for h in hosts.iter().filter(|h| h.progress > Progress::Untouched) {
            let t = out.targets.get(&h.name());
            let fields = json!({
                "commit": t.and_then(|t| t.commit.clone()),
                "release": t.map(|t| t.release.to_string()),
                "previous": h.state.current.map(|c| c.to_string()),
                "backup": t.map(|t| t.backup.to_string()),
                "safety_backup": out.safety.to_string(),
                "restore_database": r.restore_database,
                "availability": summary.availability,
            });
            let line = crate::journal::line(summary, &out.safety.to_string(), h.t.name(), fields);
            crate::journal::record(&h.t, &ctx.layout, &line, &markdown).await;
        }
    }
    unlock_all(ctx, hosts).await;
}

#[cfg(test)]
mod tests {
    use super::unfinished_note;

    #[test]
    fn a_failure_before_the_restore_began_says_the_database_was_not_touched() {
        let before = unfinished_note(false, false).unwrap();
        assert!(before.contains("was not touched"), "{before}");
        let during = unfinished_note(true, false).unwrap();
        assert!(
            during.contains("did not finish") && !during.contains("not touched"),
            "{during}"
        );
        assert_eq!(unfinished_note(true, true), None);
    }
}
