//! The manual rollback runbook as one command, and the `backups` listing it chooses from.
//!
//! Rollback: confirmation (when the environment asks for one) → lock → safety backup of the
//! current state → switch to the backup's release (instant when it is still on disk, else
//! restored from the backup's verified app.tar.gz) → optional database restore → reload →
//! health and smoke checks → mark the release we left BAD_RELEASE → log → unlock.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use crate::backup::{self, Manifest};
use crate::cli::{self, Fleet};
use crate::config::{Config, HostSpec, Invocation, ReleaseId, RollbackTarget};
use crate::error::{Error, Kind, Result};
use crate::health::{self, CheckResult};
use crate::lock::{self, LockOwner};
use crate::remote::commands::{self, HookEnv};
use crate::remote::layout::Layout;
use crate::remote::{AnyTransport, Mode, Transport};
use crate::report::{Status, Summary};
use crate::signals::Cancel;
use crate::state::{self, HostState};
use crate::steps::Steps;
use crate::ui;

/// How many backups `backups` shows.
pub const LISTED: usize = 10;

/// One line of the `backups` listing.
#[derive(Debug, Clone, Serialize)]
pub struct BackupEntry {
    pub host: String,
    pub id: String,
    pub kind: String,
    pub created_at: String,
    pub commit: Option<String>,
    pub release: Option<String>,
    pub release_on_disk: bool,
    pub release_bad: bool,
    pub current: bool,
    pub size_bytes: u64,
    pub database: bool,
}

fn entries(host: &str, state: &HostState, manifests: &[(ReleaseId, Manifest)]) -> Vec<BackupEntry> {
    manifests
        .iter()
        .take(LISTED)
        .map(|(id, m)| {
            let rel = m.release.as_deref().and_then(ReleaseId::from_name);
            let info = rel.and_then(|r| state.release(r));
            BackupEntry {
                host: host.to_string(),
                id: id.to_string(),
                kind: m.kind.clone(),
                created_at: m.created_at.clone(),
                commit: m.commit.clone(),
                release: m.release.clone(),
                release_on_disk: info.is_some_and(|i| i.revision.is_some()),
                release_bad: info.is_some_and(|i| i.bad),
                current: rel.is_some() && rel == state.current,
                size_bytes: m.size(),
                database: m.file("db.dump").is_some(),
            }
        })
        .collect()
}

fn human_size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn release_state(e: &BackupEntry) -> &'static str {
    match (e.release.is_some(), e.current, e.release_bad, e.release_on_disk) {
        (false, ..) => "none (before first deploy)",
        (_, true, ..) => "current",
        (_, _, true, _) => "BAD_RELEASE",
        (_, _, _, true) => "on disk",
        _ => "pruned (restorable)",
    }
}

/// The listing as a terminal table (`markdown = false`) or a markdown table.
pub fn render(entries: &[BackupEntry], markdown: bool) -> String {
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|e| {
            [
                e.id.clone(),
                e.kind.clone(),
                e.commit
                    .as_deref()
                    .map(|c| c[..c.len().min(7)].to_string())
                    .unwrap_or_else(|| "—".into()),
                e.release.clone().unwrap_or_else(|| "—".into()),
                release_state(e).to_string(),
                human_size(e.size_bytes),
                if e.database { "yes".into() } else { "no".into() },
            ]
        })
        .collect();
    let head = ["id", "kind", "commit", "release", "release state", "size", "db dump"];
    let mut out = String::new();
    if markdown {
        out.push_str(&format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len())));
        for r in &rows {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
    } else {
        let widths: Vec<usize> = (0..head.len())
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(head[i].len())
            })
            .collect();
        let line = |cells: Vec<&str>| -> String {
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        out.push_str(&line(head.to_vec()));
        out.push('\n');
        for r in &rows {
            out.push_str(&line(r.iter().map(String::as_str).collect()));
            out.push('\n');
        }
    }
    out
}

/// `tj-deploy backups`: the last 10 backups of each host.
pub async fn list_command(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<()> {
    let l = layout(config);
    let fleet = cli::connect(config, inv, vars).await?;
    let mut all = Vec::new();
    let mut result = Ok(());
    for (_, t) in &fleet.hosts {
        let listed = async {
            Ok::<_, Error>(entries(
                t.name(),
                &state::inspect(t, &l, None).await?,
                &backup::manifests(t, &l).await?,
            ))
        };
        match listed.await {
            Ok(e) => all.extend(e),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    fleet.close().await;
    result?;
    if inv.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&all).map_err(|e| Error::failed(e.to_string()))?
        );
    } else if all.is_empty() {
        println!("No backups in {} yet.", config.env.backup_dir);
    } else {
        print!("{}", render(&all, false));
    }
    if let Some(path) = &inv.github.summary_file {
        let md = format!(
            "## Backups of {} ({})\n\n{}\n",
            config.app,
            config.env.name,
            render(&all, true)
        );
        if let Err(e) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| {
                use std::io::Write;
                f.write_all(md.as_bytes())
            })
        {
            ui::warn(&format!("could not write the job summary: {e}"));
        }
    }
    Ok(())
}

fn layout(config: &Config) -> Layout {
    Layout::new(config.env.deploy_dir.clone(), config.env.backup_dir.clone())
}

/// The backup to restore on one host, and what it holds.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) backup: ReleaseId,
    pub(crate) release: ReleaseId,
    pub(crate) commit: Option<String>,
    pub(crate) manifest: Manifest,
}

pub(crate) fn choose(
    host: &str,
    to: RollbackTarget,
    state: &HostState,
    manifests: &[(ReleaseId, Manifest)],
) -> Result<Target> {
    let target = |id: ReleaseId, m: &Manifest| -> Option<Target> {
        let release = m.release.as_deref().and_then(ReleaseId::from_name)?;
        Some(Target {
            backup: id,
            release,
            commit: m.commit.clone(),
            manifest: m.clone(),
        })
    };
    match to {
        RollbackTarget::Id(id) => {
            let Some((_, m)) = manifests.iter().find(|(b, _)| *b == id) else {
                let have: Vec<String> = manifests.iter().take(5).map(|(b, _)| b.to_string()).collect();
                return Err(Error::invalid(format!(
                    "to: there is no backup {id} on {host} (newest: {}; see `tj-deploy backups`)",
                    if have.is_empty() {
                        "none".to_string()
                    } else {
                        have.join(", ")
                    }
                )));
            };
            target(id, m).ok_or_else(|| {
                Error::invalid(format!(
                    "to: backup {id} holds no application release (it was taken before the first deploy)"
                ))
            })
        }
        RollbackTarget::Latest => manifests
            .iter()
            .filter_map(|(id, m)| target(*id, m))
            .find(|t| Some(t.release) != state.current && !state.release(t.release).is_some_and(|r| r.bad))
            .ok_or_else(|| {
                Error::refused(format!(
                    "{host}: no backup holds a release to roll back to (none that is good and not current)"
                ))
            }),
    }
}

/// What the run did to one host, for the undo-free report.
struct HostRun<'a> {
    spec: HostSpec,
    t: &'a AnyTransport,
    state: HostState,
    target: Option<Target>,
    locked: bool,
}

/// `tj-deploy rollback`.
pub async fn command(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<()> {
    if inv.dry_run {
        return crate::dryrun::rollback(config, inv, vars).await;
    }
    if let Some(expected) = &config.env.confirm_rollback
        && inv.confirm.as_deref() != Some(expected.as_str())
    {
        return Err(Error::refused(format!(
            "confirm: rolling back {} requires --confirm {:?} (input 'confirm'){}; nothing was changed",
            config.env.name,
            expected,
            if inv.confirm.is_some() {
                ", and the text given differs"
            } else {
                ""
            }
        )));
    }
    let cancel = Cancel::install();
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let fleet: Fleet = cli::connect(config, inv, vars).await?;
    let http = health::client()?;
    let mut steps = Steps::new(&cancel, Vec::new()).with_timeouts(config.env.timeouts.clone());
    let mut github = crate::github::Reporter::new(inv)?;
    let (summary, error) = run(config, inv, &fleet, &http, &mut steps, &mut github, started, started_at).await;
    fleet.close().await;
    cli::publish(&summary, inv, &github).await;
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    config: &Config,
    inv: &Invocation,
    fleet: &Fleet,
    http: &reqwest::Client,
    steps: &mut Steps<'_>,
    github: &mut crate::github::Reporter,
    started: Instant,
    started_at: chrono::DateTime<chrono::Utc>,
) -> (Summary, Option<Error>) {
    let l = layout(config);
    let env_name = config.env.name.to_string();
    let stamp = started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let owner = LockOwner {
        actor: inv.actor.clone(),
        command: "rollback".into(),
        environment: env_name.clone(),
        sha: None,
        run_url: inv.github.run_url(),
        started_at: stamp.clone(),
        token: format!(
            "{}-{}-rollback",
            std::process::id(),
            started_at.timestamp_nanos_opt().unwrap_or_default()
        ),
    };
    let mut hosts: Vec<HostRun> = fleet
        .hosts
        .iter()
        .map(|(spec, t)| HostRun {
            spec: spec.clone(),
            t,
            state: HostState::default(),
            target: None,
            locked: false,
        })
        .collect();
    let mut safety = ReleaseId::from_time(started_at);
    let mut checks: Vec<CheckResult> = Vec::new();
    let mut switched_any = false;

    let result: Result<()> = async {
        for h in hosts.iter_mut() {
            let name = h.t.name().to_string();
            steps.run_uncancelled(&name, "lock", &l.lock(), lock::acquire(h.t, &l, &owner, &env_name)).await?;
            h.locked = true;
        }
        // Resolve the target on the first host; every other host must have that same backup.
        let mut to = inv.to;
        for h in hosts.iter_mut() {
            let name = h.t.name().to_string();
            let (state, manifests) = steps
                .run(&name, "inspect", "", async {
                    Ok((state::inspect(h.t, &l, None).await?, backup::manifests(h.t, &l).await?))
                })
                .await?;
            let target = choose(&name, to, &state, &manifests)?;
            to = RollbackTarget::Id(target.backup);
            if let Some(newest) = state.newest_id() {
                while safety <= newest {
                    safety = safety.next();
                }
            }
            ui::info(&format!(
                "{name}: rolling back to backup {} → release {} (commit {})",
                target.backup,
                target.release,
                target.commit.as_deref().map(|c| &c[..c.len().min(7)]).unwrap_or("unknown")
            ));
            h.state = state;
            h.target = Some(target);
        }
        // A rollback is a deployment of the commit it restores.
        if let Some(t) = hosts.first().and_then(|h| h.target.clone())
            && let Some(sha) = t.commit.as_deref().and_then(|c| crate::config::Sha::parse("commit", c).ok())
        {
            let release = t.release.to_string();
            let description = format!("tj-deploy rollback to {} (backup {})", sha.short(), t.backup);
            let request = crate::github::report::DeploymentRequest {
                sha: &sha,
                environment: &env_name,
                production: env_name == "production",
                marker: "",
                release: Some(&release),
                description: &description,
            };
            github.start_deployment(inv, &request).await;
        }
        for h in hosts.iter_mut() {
            let name = h.t.name().to_string();
            let Some(target) = h.target.clone() else { continue };
            let current = h.state.current.and_then(|c| h.state.release(c)).map(|r| (r.id, r.revision.clone()));
            let req = backup::Request {
                id: safety,
                kind: "safety",
                environment: &env_name,
                live: current.clone(),
                database: inv.restore_database,
                deploying: target.commit.clone(),
            };
            steps.run(&name, "safety backup", &l.backup(safety), backup::take(h.t, &l, &req)).await?;

            let on_disk = h.state.release(target.release).is_some_and(|r| r.revision.is_some());
            if on_disk {
                steps.skipped(&name, "restore", &format!("release {} is on disk", target.release));
            } else {
                if h.state.release(target.release).is_some() {
                    // An unfinished directory under that name: replace it with the backup's copy.
                    let script = commands::remove(&l, &[target.release], &[]);
                    h.t.run(&script, Mode::Capture).await?.check(&format!("{name}: remove unfinished release"))?;
                }
                let sha = target.manifest.file("app.tar.gz").map(|f| f.sha256.clone()).ok_or_else(|| {
                    Error::failed(format!("{name}: backup {} has no app.tar.gz to restore", target.backup))
                })?;
                let script = commands::restore_release(&l, target.backup, target.release, &sha);
                let what = format!("{name}: restore release {} from backup {}", target.release, target.backup);
                steps
                    .run(&name, "restore", &l.release(target.release), async {
                        h.t.run(&script, Mode::Capture).await?.check(&what)
                    })
                    .await?;
            }

            let script = commands::switch(&l, target.release, None);
            let what = format!("{name}: switch");
            let r = steps
                .run_uncancelled(&name, "switch", &format!("current → releases/{}", target.release), async {
                    h.t.run(&script, Mode::Capture).await?.check(&what)
                })
                .await;
            switched_any = true;
            r?;
            if let Some((left, _)) = &current
                && *left != target.release
            {
                let why = json!({"at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "by": inv.actor,
                    "reason": format!("rolled back to backup {} (release {})", target.backup, target.release)});
                h.t.run(&commands::mark_bad(&l, *left, &why.to_string()), Mode::Capture).await?.check(&format!("{name}: mark bad"))?;
            }

            if inv.restore_database {
                let db = target.manifest.file("db.dump").map(|f| f.sha256.clone()).ok_or_else(|| {
                    Error::failed(format!("{name}: backup {} has no db.dump to restore", target.backup))
                })?;
                ui::warn(&format!(
                    "{name}: restoring the database from backup {} (taken {}): data written since then will be lost",
                    target.backup, target.manifest.created_at
                ));
                let script = commands::restore_database(&l, target.backup, &db);
                let what = format!("{name}: restore database from backup {}", target.backup);
                steps
                    .run(&name, "restore database", &l.backup(target.backup), async {
                        h.t.run(&script, Mode::Stream).await?.check(&what)
                    })
                    .await?;
            }

            let revision = target.commit.clone().unwrap_or_default();
            if let Some(cmd) = &config.env.reload {
                let hook_env = HookEnv { environment: &env_name, release: target.release, revision: &revision };
                let script = commands::reload(&l, cmd, &hook_env);
                let what = format!("{name}: reload ({cmd})");
                steps.run(&name, "reload", cmd, async { h.t.run(&script, Mode::Stream).await?.check(&what) }).await?;
            }
            let url = health::url_for(&config.env.health_url, &h.spec);
            let v = steps.run(&name, "verify", &url, health::verify(http, &config.env, &h.spec, &revision)).await?;
            checks.extend(v.checks);
        }
        Ok(())
    }
    .await;

    let target = hosts.first().and_then(|h| h.target.clone());
    let (status, message, error) = match result {
        Ok(()) => {
            let t = target.as_ref();
            let msg = format!(
                "release {} (commit {}) from backup {} is serving; the state before is saved in backup {safety}{}",
                t.map(|t| t.release.to_string()).unwrap_or_default(),
                t.and_then(|t| t.commit.as_deref())
                    .map(|c| &c[..c.len().min(7)])
                    .unwrap_or("unknown"),
                t.map(|t| t.backup.to_string()).unwrap_or_default(),
                if inv.restore_database {
                    "; the database was restored"
                } else {
                    ""
                }
            );
            (Status::Success, msg, None)
        }
        Err(e) if matches!(e.kind, Kind::Refused | Kind::Invalid) => (Status::Refused, e.message.clone(), Some(e)),
        Err(e) => {
            let msg = if switched_any {
                format!(
                    "rollback failed: {}. The state before this rollback is saved in backup {safety}; roll forward with `tj-deploy rollback -e {env_name} --to {safety}`",
                    e.message
                )
            } else {
                format!("rollback failed before switching anything: {}", e.message)
            };
            (Status::Failure, msg.clone(), Some(Error::failed(msg)))
        }
    };

    let summary = Summary {
        command: "rollback".into(),
        status,
        environment: env_name.clone(),
        app: config.app.clone(),
        hosts: hosts.iter().map(|h| h.spec.to_string()).collect(),
        commit: target.as_ref().and_then(|t| t.commit.clone()),
        release: target.as_ref().map(|t| t.release.to_string()),
        backup: (status != Status::Refused).then(|| safety.to_string()),
        previous_release: hosts.first().and_then(|h| h.state.current).map(|c| c.to_string()),
        actor: inv.actor.clone(),
        run_url: inv.github.run_url(),
        started_at: stamp.clone(),
        duration_seconds: started.elapsed().as_secs_f64(),
        package: None,
        gates: Vec::new(),
        steps: std::mem::take(&mut steps.records),
        checks,
        message: message.clone(),
        environment_url: health::environment_url(&config.env.health_url, &config.env.hosts),
        branch: config.env.branch.clone(),
        commit_url: crate::report::commit_link(&inv.github, target.as_ref().and_then(|t| t.commit.as_deref())),
        finished_at: crate::report::now_rfc3339(),
        ..Default::default()
    };
    let markdown = summary.to_markdown();
    let finished = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for h in hosts.iter().filter(|h| h.locked) {
        // A refused rollback changed nothing, and leaves no trace either.
        let log = status != Status::Refused;
        let line = json!({
            "kind": "rollback",
            "id": safety.to_string(),
            "environment": env_name,
            "host": h.t.name(),
            "commit": h.target.as_ref().and_then(|t| t.commit.clone()),
            "release": h.target.as_ref().map(|t| t.release.to_string()),
            "previous": h.state.current.map(|c| c.to_string()),
            "backup": h.target.as_ref().map(|t| t.backup.to_string()),
            "safety_backup": safety.to_string(),
            "restore_database": inv.restore_database,
            "status": status.as_str(),
            "actor": inv.actor,
            "run_url": inv.github.run_url(),
            "started_at": stamp,
            "finished_at": finished,
            "message": message,
        });
        if log {
            crate::journal::record(h.t, &l, &line, &markdown).await;
        }
        if let Err(e) = lock::release(h.t, &l, &owner.token).await {
            ui::warn(&format!("{e}; clear it with `tj-deploy unlock -e {env_name}`"));
        }
    }

    (summary, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ReleaseId {
        ReleaseId::parse("id", s).unwrap()
    }

    fn manifest(release: Option<&str>, commit: &str) -> Manifest {
        Manifest {
            id: String::new(),
            kind: "pre-deploy".into(),
            created_at: String::new(),
            environment: "staging".into(),
            release: release.map(str::to_string),
            commit: Some(commit.into()),
            deploying: None,
            files: vec![],
        }
    }

    #[test]
    fn latest_skips_current_bad_and_empty_backups() {
        // Deploys r1, r2, r3 (r3 current); backups b1 (nothing live), b2 (r1), b3 (r2).
        let state = HostState::parse(
            "current releases/20260101_000003\nrelease 20260101_000001 a 0\nrelease 20260101_000002 b 0\nrelease 20260101_000003 c 0\n",
        );
        let ms = vec![
            (id("20260101_000003"), manifest(Some("20260101_000002"), "b")),
            (id("20260101_000002"), manifest(Some("20260101_000001"), "a")),
            (id("20260101_000001"), manifest(None, "")),
        ];
        assert_eq!(
            choose("h", RollbackTarget::Latest, &state, &ms).unwrap().release,
            id("20260101_000002")
        );
        let bad = HostState::parse(
            "current releases/20260101_000003\nrelease 20260101_000001 a 0\nrelease 20260101_000002 b 1\nrelease 20260101_000003 c 0\n",
        );
        assert_eq!(
            choose("h", RollbackTarget::Latest, &bad, &ms).unwrap().release,
            id("20260101_000001")
        );
        let e = choose("h", RollbackTarget::Id(id("20260101_000001")), &state, &ms).unwrap_err();
        assert!(e.message.contains("before the first deploy"), "{}", e.message);
        let e = choose("h", RollbackTarget::Id(id("20250101_000001")), &state, &ms).unwrap_err();
        assert_eq!(e.kind, Kind::Invalid);
        assert!(e.message.contains("no backup 20250101_000001"), "{}", e.message);
    }
}
