//! The deploy, top-down: lock and inspect every host; prepare every host (app backup, upload,
//! extract, install), `parallel` at once; the database once (dump, migrate) on the database
//! host; activate in batches (switch, reload, verify). On a failure, undo on every host this
//! run touched; then prune, log and unlock.

use std::cell::RefCell;
use std::time::Instant;

use serde_json::json;

use crate::backup;
use crate::config::{HostSpec, ReleaseId, Sha};
use crate::error::{Error, Kind, Result};
use crate::health::CheckResult;
use crate::package::Package;
use crate::pipeline::activate::{Why, activate};
use crate::pipeline::{
    Ctx, HostRun, Progress, availability, each_host, in_batches, lock_all, prepare, prune, undo, unlock_all,
};
use crate::plan::{Phase, Plan, StepKind};
use crate::remote::Transport;
use crate::report::{Change, Status, Summary};
use crate::ui;

/// What a deploy ships, besides the hosts.
pub struct Deploy<'a> {
    pub sha: &'a Sha,
    pub package: &'a Package,
    pub plan: &'a Plan,
    pub started: Instant,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// The gates that passed before this run (for the summary).
    pub gates: Vec<crate::github::gates::Gate>,
    /// For the list of changes since the previous release.
    pub github: Option<&'a crate::github::Github>,
    /// The check run, kept `in_progress` with a progress line during the watch.
    pub check: Option<u64>,
    /// The migration gate's review made before the lock (reused while the live release is
    /// the same).
    pub reviewed: Option<crate::migrations::Early>,
}

/// What the run learned and did, for the summary and the log.
struct Outcome {
    id: ReleaseId,
    /// The host holding this deploy's one database dump.
    database_backup: Option<String>,
    migrated: bool,
    migrations: Vec<String>,
    checks: RefCell<Vec<CheckResult>>,
    changes: (Vec<Change>, usize),
    /// The migrations this deploy brings, and the destructive-migrations gate's decision.
    review: Option<crate::migrations::Review>,
    /// Said once in the summary: readable shared files, backups made private, copies.
    warnings: RefCell<Vec<String>>,
    /// Undo removed the run's backups (nothing switched, no migration ran).
    backup_dropped: bool,
    availability: Option<crate::availability::Report>,
    watch: Option<crate::watch::Report>,
}

/// Migration names from the migrate step's output: Prisma's "Applying migration `x`" and the
/// sample app's "Applied migration x".
pub fn applied_migrations(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| {
            let rest = l
                .trim()
                .strip_prefix("Applying migration ")
                .or_else(|| l.trim().strip_prefix("Applied migration "))?;
            let name = rest.trim().trim_matches(|c| c == '`' || c == '\'' || c == '"');
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// Deploys to every host; always returns a summary, the error (if any) is inside it.
pub async fn run<T: Transport>(ctx: &Ctx<'_>, d: Deploy<'_>, hosts: Vec<(HostSpec, T)>) -> (Summary, Option<Error>) {
    let mut hosts: Vec<HostRun<T>> = hosts.into_iter().map(|(s, t)| HostRun::new(s, t)).collect();
    let mut out = Outcome {
        id: ReleaseId::from_time(d.started_at),
        database_backup: None,
        migrated: false,
        migrations: Vec::new(),
        checks: RefCell::new(Vec::new()),
        changes: (Vec::new(), 0),
        review: None,
        warnings: RefCell::new(drain_warning(ctx)),
        backup_dropped: false,
        availability: None,
        watch: None,
    };
    let result = phases(ctx, &d, &mut hosts, &mut out).await;
    let (status, message, mut error) = conclude(ctx, &mut hosts, &mut out, result).await;
    let message = match out
        .watch
        .as_ref()
        .filter(|w| w.ending == crate::watch::Ending::CutShort)
    {
        // DESIGN.md §7: the release stays, the status is success, the exit code is 1.
        Some(w) => {
            error = Some(Error::failed(w.headline()));
            format!("{message}; {}", w.headline())
        }
        None => message,
    };
    let summary = summary(ctx, d, &hosts, out, status, message);
    finish(ctx, &hosts, &summary).await;
    (summary, error)
}

/// The drain that cannot reach the workers (src/drain/), said once at the start and in the
/// summary.
fn drain_warning(ctx: &Ctx<'_>) -> Vec<String> {
    let env = &ctx.config.env;
    let w = crate::drain::fallback_warning(env.reload.as_deref(), env.drain);
    w.iter().for_each(|w| crate::ui::warn(w));
    w.into_iter().collect()
}

async fn phases<T: Transport>(
    ctx: &Ctx<'_>,
    d: &Deploy<'_>,
    hosts: &mut [HostRun<T>],
    out: &mut Outcome,
) -> Result<()> {
    lock_all(ctx, hosts).await?;
    inspect(ctx, d, hosts, out).await?;
    availability::http_clients(ctx, hosts).await?;
    let db = ctx.config.env.database_host.min(hosts.len().saturating_sub(1));
    review_migrations(ctx, d, &hosts[db], out).await?;
    changes(d, hosts, out).await;
    let parallel = ctx.config.env.parallel;
    let (id, warnings) = (out.id, &out.warnings);
    each_host(hosts, parallel, |h| prepare::prepare(ctx, d, h, id, warnings)).await?;
    database(ctx, d, &hosts[db], out).await?;
    // The watch judges host metrics against each host's own figures from before the switch.
    let watch = crate::watch::effective(&ctx.config.env, ctx.inv);
    let before = match &watch {
        Some(_) => crate::watch::before(ctx, hosts).await,
        None => crate::watch::baseline::Baseline::default(),
    };
    let window = availability::Window::open(ctx, hosts).await?;
    let (ts, mut views) = availability::views(hosts);
    let (checks, warnings) = (&out.checks, &out.warnings);
    let activated = in_batches(&mut views, parallel, |h| async move {
        let v = activate(ctx, h, id, d.sha.as_str(), Why::Forward { complete: true }).await?;
        checks.borrow_mut().extend(v.checks);
        crate::pipeline::crashloop::decide(ctx, v.warnings, warnings, true)
    });
    let (report, verdict) = window.during(ctx, &ts, activated, true).await;
    let progress = availability::progress(&views);
    availability::settle(hosts, progress);
    out.availability = Some(report);
    if verdict.is_ok()
        && let Some(c) = crate::health_host::public_check(ctx.http, &ctx.config.env, Some(d.sha.as_str())).await
    {
        if !c.ok {
            out.warnings
                .borrow_mut()
                .push(format!("public_url: {}: {}", c.name, c.note));
        }
        out.checks.borrow_mut().push(c);
    }
    verdict?;
    // The lock is held through the watch; a breach fails like any other step and rolls back.
    let Some(w) = watch else {
        return Ok(());
    };
    let (report, verdict) = crate::watch::run(ctx, hosts, &w, d.github.zip(d.check), before).await;
    out.watch = Some(report);
    verdict
}

/// Reads every host's state and picks a release id newer than anything on any of them.
async fn inspect<T: Transport>(
    ctx: &Ctx<'_>,
    d: &Deploy<'_>,
    hosts: &mut [HostRun<T>],
    out: &mut Outcome,
) -> Result<()> {
    for h in hosts.iter_mut() {
        let name = h.name();
        let read = crate::state::inspect(&h.t, &ctx.layout, Some(&d.package.sha256));
        h.state = ctx.steps.run(&name, StepKind::Inspect.name(), "", read).await?;
        if let Some(newest) = h.state.newest_id() {
            while out.id <= newest {
                out.id = out.id.next();
            }
        }
    }
    Ok(())
}

/// The migrations the package brings over the database host's live release; destructive
/// statements refuse the deploy (nothing touched yet) unless the environment allows them.
/// The command decided this before the lock; it is decided again if the live release moved.
async fn review_migrations<T: Transport>(
    ctx: &Ctx<'_>,
    d: &Deploy<'_>,
    h: &HostRun<T>,
    out: &mut Outcome,
) -> Result<()> {
    let allowed = ctx.inv.allow_destructive_migrations;
    let review = match &d.reviewed {
        Some(early) if early.current == h.state.current => early.review.clone(),
        _ => crate::migrations::deploy_gate(&h.t, &ctx.layout, h.state.current, ctx.config, allowed).await?,
    };
    let verdict = review.verdict();
    out.review = Some(review);
    verdict
}

/// The commits since the live one, for the summary; a failure is only a warning.
async fn changes<T: Transport>(d: &Deploy<'_>, hosts: &[HostRun<T>], out: &mut Outcome) {
    // A revision that is no commit (`adopted`: `setup --adopt` knew none) has nothing to compare.
    let prev = hosts
        .first()
        .and_then(|h| h.previous())
        .and_then(|p| p.revision.clone())
        .filter(|r| is_commit(r));
    let (Some(gh), Some(prev)) = (d.github, prev) else {
        return;
    };
    if prev == d.sha.as_str() {
        return;
    }
    match crate::github::report::changes(gh, &prev, d.sha.as_str(), 50).await {
        Ok(c) => out.changes = c,
        Err(e) => ui::warn(&format!(
            "could not list the changes since {}: {e}",
            crate::ui::prefix(&prev, 7)
        )),
    }
}

/// Whether `r` can be a commit for GitHub's compare: 7 to 40 hex digits.
fn is_commit(r: &str) -> bool {
    (7..=40).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The database, once per environment, on the database host: the dump, then the migration,
/// before any host switches.
async fn database<T: Transport>(ctx: &Ctx<'_>, d: &Deploy<'_>, h: &HostRun<T>, out: &mut Outcome) -> Result<()> {
    let name = h.name();
    for step in d.plan.phase(Phase::Database) {
        let label = step.kind.name();
        match step.kind {
            StepKind::DatabaseBackup => {
                let detail = format!("{}/db.dump", ctx.layout.backup(out.id));
                let dump = backup::take_database(&h.t, &ctx.layout, out.id, ctx.env_name());
                ctx.steps.run(&name, label, &detail, dump).await?;
                out.database_backup = Some(name.clone());
            }
            StepKind::Migrate => {
                out.migrated = true;
                let cmd = ctx.config.env.migrate.clone().unwrap_or_default();
                let stdout = prepare::hook(ctx, h, out.id, d.sha, label, &cmd).await?;
                out.migrations = applied_migrations(&stdout);
            }
            other => return Err(Error::failed(format!("{} is not a database step", other.name()))),
        }
    }
    Ok(())
}

/// Prunes after the run, or undoes it; returns the status, the message and the error.
async fn conclude<T: Transport>(
    ctx: &Ctx<'_>,
    hosts: &mut [HostRun<T>],
    out: &mut Outcome,
    result: Result<()>,
) -> (Status, String, Option<Error>) {
    let id = out.id;
    match result {
        Ok(()) => {
            prune::after_run(ctx, hosts, Some(id)).await;
            let message = format!(
                "release {id} (commit {}) is live on {} host(s)",
                short(&ctx.owner.sha),
                hosts.len()
            );
            (Status::Success, message, None)
        }
        // Refused means untouched: only while no host holds anything of this run.
        Err(e) if matches!(e.kind, Kind::Refused | Kind::Invalid) && untouched(hosts) => {
            (Status::Refused, e.message.clone(), Some(e))
        }
        Err(e) => {
            out.backup_dropped = !out.migrated && !hosts.iter().any(|h| h.progress == Progress::Switched);
            let undone = undo::deploy(ctx, hosts, id, &e, out.backup_dropped).await;
            let switched = hosts.iter().any(|h| h.progress == Progress::Switched);
            let status = if switched && undone.is_ok() {
                Status::RolledBack
            } else {
                Status::Failure
            };
            let mut message = match &undone {
                Ok(note) => format!("deploy failed: {}. {note}", e.message),
                Err(note) => format!("deploy failed: {}. Rollback ALSO failed: {note}", e.message),
            };
            if out.migrated {
                message.push_str(&match &out.database_backup {
                    Some(host) => format!(
                        " Database migrations ran and were not reverted; backup {id} on {host} holds the database from before this deploy."
                    ),
                    None => " Database migrations ran and were not reverted; no database backup was taken (database_backup is off).".to_string(),
                });
            }
            prune::after_run(ctx, hosts, None).await;
            (status, message.clone(), Some(Error::failed(message)))
        }
    }
}

/// No host got further than its lock.
pub(super) fn untouched<T>(hosts: &[HostRun<T>]) -> bool {
    hosts.iter().all(|h| h.progress <= Progress::Locked)
}

fn short(sha: &Option<String>) -> &str {
    sha.as_deref().map(|s| crate::ui::prefix(s, 7)).unwrap_or("—")
}

fn summary<T: Transport>(
    ctx: &Ctx<'_>,
    d: Deploy<'_>,
    hosts: &[HostRun<T>],
    out: Outcome,
    status: Status,
    message: String,
) -> Summary {
    let previous = hosts.first().and_then(|h| h.previous()).map(|p| p.id.to_string());
    // The release output names what is live now: the new one, or the one a failure left serving.
    let release = match status {
        Status::Success => Some(out.id.to_string()),
        Status::Refused => None,
        _ => previous.clone(),
    };
    let p = d.package;
    Summary {
        warnings: out.warnings.take(),
        availability: out.availability,
        watch: out.watch,
        status,
        release,
        failed_release: matches!(status, Status::Failure | Status::RolledBack).then(|| out.id.to_string()),
        backup: (status != Status::Refused && !out.backup_dropped).then(|| out.id.to_string()),
        previous_release: previous,
        package: Some(format!(
            "{} sha256 {} ({} bytes, {} files)",
            p.name, p.sha256, p.size, p.files
        )),
        gates: d.gates,
        changes: out.changes.0,
        changes_total: out.changes.1,
        migrations: out.migrations,
        migration_review: out.review,
        steps: ctx.steps.take(),
        checks: out.checks.into_inner(),
        message,
        ..Summary::begin(ctx.config, ctx.inv, "deploy", d.started_at)
    }
    .end(ctx.inv, Some(d.sha.as_str()), d.started.elapsed().as_secs_f64())
}

/// Logs the run on every host it locked (a refused run leaves no trace), then unlocks.
async fn finish<T: Transport>(ctx: &Ctx<'_>, hosts: &[HostRun<T>], summary: &Summary) {
    if summary.status != Status::Refused {
        let markdown = summary.to_markdown();
        let id = summary.failed_release.clone().or(summary.release.clone());
        for h in hosts.iter().filter(|h| h.progress > Progress::Untouched) {
            let destructive = summary
                .migration_review
                .as_ref()
                .filter(|r| !r.flags.is_empty())
                .map(|r| {
                    json!({
                        "decision": r.decision,
                        "statements": r.flags.iter().map(crate::migrations::Flag::describe).collect::<Vec<_>>(),
                    })
                });
            let fields = json!({
                "release": id,
                "previous": h.previous().map(|p| p.id.to_string()),
                "backup": summary.backup,
                "destructive_migrations": destructive,
                "availability": summary.availability,
                "watch": summary.watch,
            });
            let line = crate::journal::line(summary, id.as_deref().unwrap_or(""), h.t.name(), fields);
            crate::journal::record(&h.t, &ctx.layout, &line, &markdown).await;
        }
    }
    unlock_all(ctx, hosts).await;
}

#[cfg(test)]
mod tests {
    /// The first deploy after `setup --adopt` (REVISION `adopted`) asks GitHub for no compare.
    #[test]
    fn an_adopted_revision_is_no_commit() {
        assert!(!super::is_commit("adopted"));
        assert!(!super::is_commit("abc"));
        assert!(super::is_commit("0123abc"));
        assert!(super::is_commit(&"a".repeat(40)));
        assert!(!super::is_commit(&"a".repeat(41)));
    }
}
