//! The deploy pipeline: lock every host, then per host back up, upload, extract, install,
//! migrate, switch, reload and verify; on a failure, undo what this run changed (remove the
//! unfinished release, or switch back and verify the previous one) on every host it touched,
//! so the fleet never ends on mixed releases. Then prune, log and unlock.

use std::time::Instant;

use serde_json::json;

use crate::backup;
use crate::config::{Config, HostSpec, Invocation, ReleaseId, Sha};
use crate::error::{Error, Kind, Result};
use crate::health::{self, CheckResult};
use crate::lock::{self, LockOwner};
use crate::package::Package;
use crate::remote::commands::{self, HookEnv};
use crate::remote::layout::Layout;
use crate::remote::{Mode, Transport};
use crate::report::{Status, Summary};
use crate::state::{self, HostState, ReleaseInfo};
use crate::steps::Steps;
use crate::ui;

/// One host in this run and what the run has done to it so far.
struct Host<T> {
    spec: HostSpec,
    t: T,
    state: HostState,
    locked: bool,
    created: bool,
    switched: bool,
}

impl<T> Host<T> {
    fn previous(&self) -> Option<&ReleaseInfo> {
        self.state.current.and_then(|c| self.state.release(c))
    }
}

/// Everything the pipeline needs besides the hosts.
pub struct Run<'a> {
    pub config: &'a Config,
    pub inv: &'a Invocation,
    pub sha: &'a Sha,
    pub package: &'a Package,
    pub started: Instant,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub steps: Steps<'a>,
    /// The gates that passed before this run (for the summary).
    pub gates: Vec<crate::github::gates::Gate>,
    /// For the list of changes since the previous release.
    pub github: Option<&'a crate::github::Github>,
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

/// The plan a dry run prints: every step, in order, with what it will do.
pub fn plan(config: &Config, sha: Option<&Sha>) -> Vec<(String, String)> {
    let env = &config.env;
    let l = Layout::new(env.deploy_dir.clone(), env.backup_dir.clone());
    let sha7 = sha.map(|s| s.short().to_string()).unwrap_or_else(|| "<sha>".into());
    let mut steps = vec![
        (
            "package".to_string(),
            format!(
                "{} → {}",
                config.package_dir.display(),
                crate::package::file_name(&config.app, &sha7)
            ),
        ),
        (
            "connect".to_string(),
            env.hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(", "),
        ),
        ("lock".to_string(), l.lock()),
        (
            "backup".to_string(),
            format!(
                "{}tar.gz of the live release → {}/<id>/",
                if env.database_backup {
                    "pg_dump -Fc of DATABASE_URL (shared/.env) + "
                } else {
                    ""
                },
                env.backup_dir
            ),
        ),
        (
            "upload".to_string(),
            format!(
                "→ {}/<sha256>.tar.gz, verified; skipped when already there",
                l.packages()
            ),
        ),
        (
            "extract".to_string(),
            format!(
                "→ {}/<id>/, link {}{}",
                l.releases(),
                env.linked_files.join(", "),
                env.reload
                    .as_deref()
                    .and_then(crate::ecosystem::file_from_reload)
                    .map(|f| format!("; lint {f} with the host's node (warnings only)"))
                    .unwrap_or_default()
            ),
        ),
    ];
    if let Some(c) = &env.install {
        let reuse = if env.reuse_dependencies {
            " (or, same lockfile, node and command: the stored node_modules, hard-linked)"
        } else {
            ""
        };
        steps.push(("install".into(), format!("{c}{reuse}")));
    }
    if let Some(c) = &env.migrate {
        steps.push(("migrate".into(), c.clone()));
    }
    steps.push((
        "switch".into(),
        format!("{} → releases/<id> (atomic rename)", l.current()),
    ));
    if let Some(c) = &env.reload {
        steps.push(("reload".into(), c.clone()));
    }
    let smoke: Vec<String> = env.smoke.iter().map(|s| s.to_string()).collect();
    steps.push((
        "verify".into(),
        format!(
            "{} healthy with revision {sha7} within {}{}",
            env.health_url,
            ui::format_duration(env.health_timeout),
            if smoke.is_empty() {
                String::new()
            } else {
                format!("; smoke: {}", smoke.join(", "))
            }
        ),
    ));
    steps.push((
        "prune".into(),
        format!("keep {} releases, {} backups", env.keep_releases, env.keep_backups),
    ));
    steps.push(("unlock".into(), format!("and log to {}", l.log())));
    steps
}

impl Run<'_> {
    fn layout(&self) -> Layout {
        Layout::new(self.config.env.deploy_dir.clone(), self.config.env.backup_dir.clone())
    }

    fn owner(&self) -> LockOwner {
        LockOwner {
            actor: self.inv.actor.clone(),
            command: "deploy".into(),
            environment: self.config.env.name.to_string(),
            sha: Some(self.sha.to_string()),
            run_url: self.inv.github.run_url(),
            started_at: self.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            token: format!(
                "{}-{}-{}",
                std::process::id(),
                self.started_at.timestamp_nanos_opt().unwrap_or_default(),
                self.sha.short()
            ),
        }
    }

    /// Deploys to every host; always returns a summary, the error (if any) is inside it.
    pub async fn deploy<T: Transport>(
        mut self,
        hosts: Vec<(HostSpec, T)>,
        http: &reqwest::Client,
    ) -> (Summary, Option<Error>) {
        let mut hosts: Vec<Host<T>> = hosts
            .into_iter()
            .map(|(spec, t)| Host {
                spec,
                t,
                state: HostState::default(),
                locked: false,
                created: false,
                switched: false,
            })
            .collect();
        let owner = self.owner();
        let l = self.layout();
        let mut id = ReleaseId::from_time(self.started_at);
        let mut checks: Vec<CheckResult> = Vec::new();
        let mut backup_id = None;
        // The hosts whose backup completed: on a fleet, the one that failed first may lack it.
        let mut backed_up: Vec<String> = Vec::new();
        let mut migrated = false;
        let mut migrations: Vec<String> = Vec::new();
        let mut changes = (Vec::new(), 0);
        let mut warnings: Vec<String> = Vec::new();

        let result: Result<()> = async {
            for h in hosts.iter_mut() {
                let name = h.t.name().to_string();
                let env_name = self.config.env.name.to_string();
                // Short and state-changing: a signal waits for it to finish (the next step sees
                // the cancellation), so a lock is never taken behind the cleanup's back.
                self.steps
                    .run_uncancelled(&name, "lock", &l.lock(), lock::acquire(&h.t, &l, &owner, &env_name))
                    .await?;
                h.locked = true;
            }
            for h in hosts.iter_mut() {
                let name = h.t.name().to_string();
                h.state = self
                    .steps
                    .run(
                        &name,
                        "inspect",
                        "",
                        state::inspect(&h.t, &l, Some(&self.package.sha256)),
                    )
                    .await?;
                if let Some(newest) = h.state.newest_id() {
                    while id <= newest {
                        id = id.next();
                    }
                }
            }
            if let (Some(gh), Some(prev)) = (
                self.github,
                hosts
                    .first()
                    .and_then(|h| h.previous())
                    .and_then(|p| p.revision.clone()),
            ) && prev != self.sha.as_str()
            {
                match crate::github::report::changes(gh, &prev, self.sha.as_str(), 50).await {
                    Ok(c) => changes = c,
                    Err(e) => ui::warn(&format!(
                        "could not list the changes since {}: {e}",
                        &prev[..prev.len().min(7)]
                    )),
                }
            }
            for h in hosts.iter_mut() {
                let name = h.t.name().to_string();
                let live = h.previous().map(|p| (p.id, p.revision.clone()));
                let req = backup::Request {
                    id,
                    kind: "pre-deploy",
                    environment: self.config.env.name.as_str(),
                    live,
                    database: self.config.env.database_backup,
                    deploying: Some(self.sha.to_string()),
                };
                let detail = l.backup(id);
                self.steps
                    .run(&name, "backup", &detail, backup::take(&h.t, &l, &req))
                    .await?;
                backup_id = Some(id);
                backed_up.push(name.clone());

                if h.state.package_present {
                    self.steps.skipped(&name, "upload", "already on the host");
                } else {
                    let bar = ui::progress(self.package.size, "upload");
                    let progress = |n: u64| bar.inc(n);
                    let script = commands::upload(&l, &self.package.sha256);
                    let what = format!("{name}: upload");
                    let path = self.package.path.clone();
                    let detail = format!("{} ({} bytes)", self.package.name, self.package.size);
                    self.steps
                        .run(&name, "upload", &detail, async {
                            h.t.run_with_file(&script, &path, &progress).await?.check(&what)
                        })
                        .await?;
                    bar.finish_and_clear();
                }

                let script = commands::extract(&l, &self.package.sha256, id, &self.config.env.linked_files);
                h.created = true;
                let what = format!("{name}: extract");
                self.steps
                    .run(&name, "extract", &l.release(id), async {
                        h.t.run(&script, Mode::Capture).await?.check(&what)
                    })
                    .await?;

                let env_name = self.config.env.name.to_string();
                let sha = self.sha.to_string();
                let hook_env = HookEnv {
                    environment: &env_name,
                    release: id,
                    revision: &sha,
                };
                for w in crate::ecosystem::lint_host(&h.t, &l, self.config.env.reload.as_deref(), &hook_env).await {
                    if !warnings.contains(&w) {
                        ui::warn(&w);
                        warnings.push(w);
                    }
                }
                if let Some(cmd) = self.config.env.install.clone() {
                    let reuse = self.config.env.reuse_dependencies;
                    self.steps
                        .run_noted(&name, "install", &cmd, async {
                            let o = crate::deps::install(&h.t, &l, id, &cmd, &hook_env, reuse).await?;
                            Ok(((), o.note()))
                        })
                        .await?;
                }
                if let Some(cmd) = self.config.env.migrate.clone() {
                    let label = "migrate";
                    let script = commands::hook(&l, label, &cmd, &hook_env);
                    let what = format!("{name}: {label} ({cmd})");
                    migrated = true;
                    let out = self
                        .steps
                        .run(&name, label, &cmd, async {
                            h.t.run(&script, Mode::Stream).await?.check(&what)
                        })
                        .await?;
                    if migrations.is_empty() {
                        migrations = applied_migrations(&out.stdout);
                    }
                }

                let script = commands::switch(&l, id, Some(self.sha.as_str()));
                let what = format!("{name}: switch");
                // Not cancelled midway, like the lock: the switch is one rename.
                let switched = self
                    .steps
                    .run_uncancelled(&name, "switch", &format!("current → releases/{id}"), async {
                        h.t.run(&script, Mode::Capture).await?.check(&what)
                    })
                    .await;
                // A switch that failed (say, the connection dropped) may still have happened:
                // treat it as done so the failure path switches back explicitly.
                h.switched = true;
                switched?;

                if let Some(cmd) = self.config.env.reload.clone() {
                    let script = commands::reload(&l, &cmd, &hook_env);
                    let what = format!("{name}: reload ({cmd})");
                    self.steps
                        .run(&name, "reload", &cmd, async {
                            h.t.run(&script, Mode::Stream).await?.check(&what)
                        })
                        .await?;
                }
                let spec = h.spec.clone();
                let url = health::url_for(&self.config.env.health_url, &spec);
                let env = self.config.env.clone();
                let v = self
                    .steps
                    .run(
                        &name,
                        "verify",
                        &url,
                        health::verify(http, &env, &spec, self.sha.as_str()),
                    )
                    .await?;
                checks.extend(v.checks);
            }
            Ok(())
        }
        .await;

        let mut status = Status::Success;
        let mut message = format!(
            "release {id} (commit {}) is live on {} host(s)",
            self.sha.short(),
            hosts.len()
        );
        let error = match result {
            Ok(()) => {
                for h in hosts.iter_mut() {
                    let name = h.t.name().to_string();
                    let mut after = h.state.clone();
                    after.releases.push(ReleaseInfo {
                        id,
                        revision: Some(self.sha.to_string()),
                        bad: false,
                    });
                    after.current = Some(id);
                    after.backups.push(id);
                    let (releases, backups) =
                        after.prune_plan(self.config.env.keep_releases, self.config.env.keep_backups, id);
                    if releases.is_empty() && backups.is_empty() {
                        continue;
                    }
                    let detail = format!("{} release(s), {} backup(s)", releases.len(), backups.len());
                    let script = commands::remove(&l, &releases, &backups);
                    let what = format!("{name}: prune");
                    if let Err(e) = self
                        .steps
                        .run(&name, "prune", &detail, async {
                            h.t.run(&script, Mode::Capture).await?.check(&what)
                        })
                        .await
                    {
                        ui::warn(&format!("{e} (the deploy itself succeeded)"));
                    }
                    if let Err(e) = crate::deps::prune(&h.t, &l).await {
                        ui::warn(&format!("{e} (the deploy itself succeeded)"));
                    }
                }
                None
            }
            Err(e) if e.kind == Kind::Refused || e.kind == Kind::Invalid => {
                status = Status::Refused;
                message = e.message.clone();
                Some(e)
            }
            Err(e) => {
                let undo = self.undo(&mut hosts, id, &e, http, &mut checks).await;
                status = if hosts.iter().any(|h| h.switched) && undo.is_ok() {
                    Status::RolledBack
                } else {
                    Status::Failure
                };
                message = match &undo {
                    Ok(note) => format!("deploy failed: {}. {note}", e.message),
                    Err(note) => format!("deploy failed: {}. Rollback ALSO failed: {note}", e.message),
                };
                if migrated {
                    let on = if hosts.len() > 1 {
                        format!(" (taken on {})", backed_up.join(", "))
                    } else {
                        String::new()
                    };
                    message.push_str(&format!(
                        " Database migrations ran and were not reverted; backup {}{on} holds the database from before this deploy.",
                        backup_id.map(|b| b.to_string()).unwrap_or_else(|| "—".into())
                    ));
                }
                Some(Error::failed(message.clone()))
            }
        };

        let previous = hosts.first().and_then(|h| h.previous()).map(|p| p.id.to_string());
        let summary = Summary {
            command: "deploy".into(),
            status,
            environment: self.config.env.name.to_string(),
            app: self.config.app.clone(),
            hosts: hosts.iter().map(|h| h.spec.to_string()).collect(),
            commit: Some(self.sha.to_string()),
            release: (status != Status::Refused).then(|| id.to_string()),
            backup: backup_id.map(|b| b.to_string()),
            previous_release: previous,
            actor: self.inv.actor.clone(),
            run_url: self.inv.github.run_url(),
            started_at: self.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            duration_seconds: self.started.elapsed().as_secs_f64(),
            package: Some(format!(
                "{} sha256 {} ({} bytes, {} files)",
                self.package.name, self.package.sha256, self.package.size, self.package.files
            )),
            gates: std::mem::take(&mut self.gates),
            changes: changes.0,
            changes_total: changes.1,
            migrations,
            warnings,
            steps: std::mem::take(&mut self.steps.records),
            checks,
            message,
            environment_url: health::environment_url(&self.config.env.health_url, &self.config.env.hosts),
            branch: self.config.env.branch.clone(),
            commit_url: crate::report::commit_link(&self.inv.github, Some(self.sha.as_str())),
            finished_at: crate::report::now_rfc3339(),
        };
        let markdown = summary.to_markdown();
        let finished = chrono::Utc::now();
        for h in hosts.iter().filter(|h| h.locked) {
            // A refused run (a lock held on a later host) changed nothing, and leaves no trace
            // on the hosts it had locked either: it only releases their locks.
            if status != Status::Refused {
                let line = json!({
                    "kind": "deploy",
                    "id": id.to_string(),
                    "environment": self.config.env.name.as_str(),
                    "host": h.t.name(),
                    "commit": self.sha.as_str(),
                    "release": id.to_string(),
                    "previous": h.previous().map(|p| p.id.to_string()),
                    "backup": backup_id.map(|b| b.to_string()),
                    "status": status.as_str(),
                    "actor": self.inv.actor,
                    "run_url": self.inv.github.run_url(),
                    "started_at": self.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "finished_at": finished.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "message": summary.message,
                });
                crate::journal::record(&h.t, &l, &line, &markdown).await;
            }
            if let Err(e) = lock::release(&h.t, &l, &owner.token).await {
                ui::warn(&format!(
                    "{e}; clear it with `tj-deploy unlock -e {}`",
                    self.config.env.name
                ));
            }
        }
        (summary, error)
    }

    /// Undoes this run on every host it touched, newest first. Returns what it did, or why it
    /// could not.
    async fn undo<T: Transport>(
        &mut self,
        hosts: &mut [Host<T>],
        id: ReleaseId,
        cause: &Error,
        http: &reqwest::Client,
        checks: &mut Vec<CheckResult>,
    ) -> std::result::Result<String, String> {
        let l = self.layout();
        let mut notes = Vec::new();
        let mut failures = Vec::new();
        for h in hosts.iter_mut().rev() {
            let name = h.t.name().to_string();
            if h.switched {
                let bad = json!({
                    "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "by": self.inv.actor,
                    "reason": cause.message,
                });
                let _ =
                    h.t.run(&commands::mark_bad(&l, id, &bad.to_string()), Mode::Capture)
                        .await;
                let Some(prev) = h.previous().cloned() else {
                    failures.push(format!(
                        "{name}: no previous release to roll back to; {id} stays current and is marked BAD_RELEASE"
                    ));
                    continue;
                };
                let rev = prev.revision.clone().unwrap_or_default();
                let env_name = self.config.env.name.to_string();
                let hook_env = HookEnv {
                    environment: &env_name,
                    release: prev.id,
                    revision: &rev,
                };
                let what = format!("{name}: switch back");
                let script = commands::switch(&l, prev.id, None);
                let r = self
                    .steps
                    .run_uncancelled(&name, "rollback", &format!("current → releases/{}", prev.id), async {
                        h.t.run(&script, Mode::Capture).await?.check(&what)
                    })
                    .await;
                if let Err(e) = r {
                    failures.push(e.message);
                    continue;
                }
                if let Some(cmd) = self.config.env.reload.clone() {
                    let script = commands::reload(&l, &cmd, &hook_env);
                    let what = format!("{name}: reload after rollback");
                    if let Err(e) = self
                        .steps
                        .run_uncancelled(&name, "reload", &cmd, async {
                            h.t.run(&script, Mode::Stream).await?.check(&what)
                        })
                        .await
                    {
                        failures.push(e.message);
                        continue;
                    }
                }
                let env = self.config.env.clone();
                let spec = h.spec.clone();
                match self
                    .steps
                    .run_uncancelled(
                        &name,
                        "re-verify",
                        &env.health_url,
                        health::verify(http, &env, &spec, &rev),
                    )
                    .await
                {
                    Ok(v) => {
                        checks.extend(v.checks);
                        notes.push(format!(
                            "{name}: rolled back, release {} (commit {}) is serving again; {id} is marked BAD_RELEASE",
                            prev.id,
                            &rev[..rev.len().min(7)]
                        ));
                    }
                    Err(e) => failures.push(e.message),
                }
            } else if h.created {
                let script = commands::remove(&l, &[id], &[]);
                let what = format!("{name}: remove unfinished release");
                match self
                    .steps
                    .run_uncancelled(&name, "cleanup", &l.release(id), async {
                        h.t.run(&script, Mode::Capture).await?.check(&what)
                    })
                    .await
                {
                    Ok(_) => notes.push(format!("{name}: unfinished release {id} removed, current unchanged")),
                    Err(e) => failures.push(e.message),
                }
            }
        }
        if failures.is_empty() {
            if notes.is_empty() {
                Ok("Nothing was changed on the hosts.".to_string())
            } else {
                Ok(notes.join("; ") + ".")
            }
        } else {
            Err(failures.join("; "))
        }
    }
}
