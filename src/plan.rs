//! The plan of a run as one value: the ordered steps of each phase, with what each will do.
//! `--dry-run` and `check` print it, and the pipeline executes it step by step (every phase
//! iterates over its planned steps), so what is shown and what runs cannot drift apart.

use crate::config::{Config, Sha};
use crate::remote::layout::Layout;
use crate::ui;

/// The phases of a deploy or rollback, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// On this machine, before any host: the package.
    Local,
    /// Every host, all or none: connect, lock, inspect.
    Lock,
    /// Every host, `parallel` at once; nothing users see changes.
    Prepare,
    /// Once per environment, on the database host, before any switch.
    Database,
    /// In batches of `parallel` hosts: switch, reload, verify.
    Activate,
    /// Every host: prune, log, unlock.
    Finish,
}

/// Every step a run can take. The name is what the terminal, the summary and the plan show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Package,
    Connect,
    Lock,
    Inspect,
    Backup,
    SafetyBackup,
    Upload,
    Extract,
    Restore,
    Install,
    DatabaseBackup,
    RestoreDatabase,
    Migrate,
    Switch,
    Reload,
    Verify,
    Prune,
    Unlock,
}

impl StepKind {
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Package => "package",
            StepKind::Connect => "connect",
            StepKind::Lock => "lock",
            StepKind::Inspect => "inspect",
            StepKind::Backup => "backup",
            StepKind::SafetyBackup => "safety backup",
            StepKind::Upload => "upload",
            StepKind::Extract => "extract",
            StepKind::Restore => "restore",
            StepKind::Install => "install",
            StepKind::DatabaseBackup => "database backup",
            StepKind::RestoreDatabase => "restore database",
            StepKind::Migrate => "migrate",
            StepKind::Switch => "switch",
            StepKind::Reload => "reload",
            StepKind::Verify => "verify",
            StepKind::Prune => "prune",
            StepKind::Unlock => "unlock",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    pub phase: Phase,
    pub kind: StepKind,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub command: &'static str,
    pub steps: Vec<PlannedStep>,
    /// What happens when a step fails.
    pub on_failure: String,
}

/// What a rollback plan needs to know besides the config.
pub struct RollbackPlan<'a> {
    pub to: &'a str,
    pub restore_database: bool,
}

fn layout(config: &Config) -> Layout {
    Layout::new(config.env.deploy_dir.clone(), config.env.backup_dir.clone())
}

fn hosts(config: &Config) -> String {
    config
        .env
        .hosts
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn database_host(config: &Config) -> String {
    config
        .env
        .hosts
        .get(config.env.database_host)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

impl Plan {
    fn push(&mut self, phase: Phase, kind: StepKind, detail: impl Into<String>) {
        self.steps.push(PlannedStep {
            phase,
            kind,
            detail: detail.into(),
        });
    }

    /// The steps of one phase, in order.
    pub fn phase(&self, phase: Phase) -> impl Iterator<Item = &PlannedStep> {
        self.steps.iter().filter(move |s| s.phase == phase)
    }

    pub fn has(&self, kind: StepKind) -> bool {
        self.steps.iter().any(|s| s.kind == kind)
    }

    /// Step names in order, each once.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        for s in &self.steps {
            if !names.contains(&s.kind.name()) {
                names.push(s.kind.name());
            }
        }
        names
    }

    /// The deploy pipeline for `config` (DESIGN.md §4 layout; phases of [`Phase`]).
    pub fn deploy(config: &Config, sha: Option<&Sha>) -> Plan {
        let env = &config.env;
        let l = layout(config);
        let sha7 = sha.map(|s| s.short().to_string()).unwrap_or_else(|| "<sha>".into());
        let mut p = Plan {
            command: "deploy",
            steps: Vec::new(),
            on_failure: format!(
                "On a failure: prepared releases are removed; switched hosts go back to their previous release (reload, verify) and the failed one is marked BAD_RELEASE; {} host(s) at once.",
                env.parallel
            ),
        };
        let file = crate::package::file_name(&config.app, &sha7);
        p.push(
            Phase::Local,
            StepKind::Package,
            format!("{} → {file}", config.package_dir.display()),
        );
        p.push(Phase::Lock, StepKind::Connect, hosts(config));
        p.push(
            Phase::Lock,
            StepKind::Lock,
            format!("{} on every host, all or none", l.lock()),
        );
        p.push(Phase::Lock, StepKind::Inspect, "releases, current, backups, package");
        Self::preparation(&mut p, config);
        if env.database_backup {
            p.push(
                Phase::Database,
                StepKind::DatabaseBackup,
                format!(
                    "pg_dump -Fc of DATABASE_URL (shared/.env) on {}, once",
                    database_host(config)
                ),
            );
        }
        if let Some(c) = &env.migrate {
            p.push(
                Phase::Database,
                StepKind::Migrate,
                format!("{c} (on {}, once)", database_host(config)),
            );
        }
        Self::activation(&mut p, config, &sha7);
        p.push(
            Phase::Finish,
            StepKind::Prune,
            format!("keep {} releases, {} backups", env.keep_releases, env.keep_backups),
        );
        p.push(Phase::Finish, StepKind::Unlock, format!("and log to {}", l.log()));
        p
    }

    fn preparation(p: &mut Plan, config: &Config) {
        let env = &config.env;
        let l = layout(config);
        p.push(
            Phase::Prepare,
            StepKind::Backup,
            format!(
                "the live release → {}/<id>/ (every host, {} at once)",
                env.backup_dir, env.parallel
            ),
        );
        p.push(
            Phase::Prepare,
            StepKind::Upload,
            format!(
                "→ {}/<sha256>.tar.gz, verified; skipped when already there",
                l.packages()
            ),
        );
        let lint = env
            .reload
            .as_deref()
            .and_then(crate::ecosystem::file_from_reload)
            .map(|f| format!("; lint {f} with the host's node (warnings only)"))
            .unwrap_or_default();
        p.push(
            Phase::Prepare,
            StepKind::Extract,
            format!("→ {}/<id>/, link {}{lint}", l.releases(), env.linked_files.join(", ")),
        );
        if let Some(c) = &env.install {
            let reuse = if env.reuse_dependencies {
                " (or, same lockfile, node and command: the stored node_modules, hard-linked)"
            } else {
                ""
            };
            p.push(Phase::Prepare, StepKind::Install, format!("{c}{reuse}"));
        }
    }

    fn activation(p: &mut Plan, config: &Config, revision: &str) {
        let env = &config.env;
        p.push(
            Phase::Activate,
            StepKind::Switch,
            format!(
                "{} → releases/<id> (atomic rename; {} host(s) at a time)",
                layout(config).current(),
                env.parallel
            ),
        );
        if let Some(c) = &env.reload {
            p.push(Phase::Activate, StepKind::Reload, c.clone());
        }
        let smoke: Vec<String> = env.smoke.iter().map(|s| s.to_string()).collect();
        p.push(
            Phase::Activate,
            StepKind::Verify,
            format!(
                "{}{} healthy with revision {revision} within {}{}",
                env.health_url,
                if env.health_from_host { " (on each host)" } else { "" },
                ui::format_duration(env.health_timeout),
                if smoke.is_empty() {
                    String::new()
                } else {
                    format!("; smoke: {}", smoke.join(", "))
                }
            ),
        );
    }

    /// The rollback pipeline: same phases, restoring instead of shipping.
    pub fn rollback(config: &Config, r: &RollbackPlan) -> Plan {
        let env = &config.env;
        let l = layout(config);
        let mut p = Plan {
            command: "rollback",
            steps: Vec::new(),
            on_failure: "On a failure after a switch: every switched host goes back to the release that was live before the rollback (reload, verify).".into(),
        };
        p.push(Phase::Lock, StepKind::Connect, hosts(config));
        p.push(
            Phase::Lock,
            StepKind::Lock,
            format!("{} on every host, all or none", l.lock()),
        );
        p.push(
            Phase::Lock,
            StepKind::Inspect,
            format!("choose backup {} (the same on every host)", r.to),
        );
        p.push(
            Phase::Prepare,
            StepKind::SafetyBackup,
            format!("the live release → {}/<id>/ (kind safety)", env.backup_dir),
        );
        p.push(
            Phase::Prepare,
            StepKind::Restore,
            "the backup's release from its package when it is no longer on disk",
        );
        if r.restore_database {
            p.push(
                Phase::Database,
                StepKind::DatabaseBackup,
                format!("pg_dump -Fc of the database as it is now, on {}", database_host(config)),
            );
            p.push(
                Phase::Database,
                StepKind::RestoreDatabase,
                format!(
                    "pg_restore of the backup's db.dump on {}, once (data written since is lost)",
                    database_host(config)
                ),
            );
        }
        Self::activation(&mut p, config, "<the backup's commit>");
        p.push(
            Phase::Finish,
            StepKind::Prune,
            format!("keep {} releases, {} backups", env.keep_releases, env.keep_backups),
        );
        p.push(
            Phase::Finish,
            StepKind::Unlock,
            format!("mark the left release BAD_RELEASE, log to {}", l.log()),
        );
        p
    }

    /// The numbered listing a dry run and the check print.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.steps.iter().enumerate() {
            out.push_str(&format!("{:>3}. {:<16} {}\n", i + 1, s.kind.name(), s.detail));
        }
        out.push_str(&self.on_failure);
        out.push('\n');
        out
    }
}
