//! Migration review: which migrations a change brings (the package's `migrations_dir`, one
//! directory per migration with a `migration.sql`, minus those already live), which of their
//! statements can lose data or break the running release ([`sql`]), and the
//! `destructive_migrations` gate of a deploy.

pub mod applied;
pub mod sql;

pub use sql::flag_sql;

use std::path::Path;

use serde::Serialize;

use crate::config::{Config, ReleaseId};
use crate::error::{Error, Result};
use crate::remote::layout::Layout;
use crate::remote::{Mode, Transport, commands};
use crate::ui;

/// One statement that can lose data or break the running release.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Flag {
    pub migration: String,
    /// The migration file relative to the repository root (check-run annotations need that).
    pub path: String,
    pub line: usize,
    /// What was found, e.g. `DROP COLUMN`.
    pub what: String,
    /// The statement on one line, cut to 160 characters.
    pub statement: String,
}

impl Flag {
    pub fn describe(&self) -> String {
        format!("{}:{}: {} — {}", self.path, self.line, self.what, self.statement)
    }
}

/// The review of one run: what is pending against what, what is flagged, and the decision.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct Review {
    /// What the package was compared with, e.g. `release 20260118_143000 on app-1`.
    pub against: String,
    pub pending: Vec<String>,
    pub flags: Vec<Flag>,
    /// The gate's decision in words (empty in a PR check).
    pub decision: String,
    /// The deploy gate refused these migrations.
    pub refused: bool,
}

/// `destructive_migrations`: what a deploy does with flagged statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    Allow,
    Confirm,
    Refuse,
}

impl Policy {
    pub fn parse(key: &str, s: &str) -> Result<Self> {
        match s {
            "allow" => Ok(Policy::Allow),
            "confirm" => Ok(Policy::Confirm),
            "refuse" => Ok(Policy::Refuse),
            other => Err(Error::invalid(format!(
                "{key}: {other:?} is not \"allow\", \"confirm\" or \"refuse\""
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Allow => "allow",
            Policy::Confirm => "confirm",
            Policy::Refuse => "refuse",
        }
    }
}

/// The migrations under `dir` (directories holding a `migration.sql`), sorted by name.
/// A missing directory has none.
pub fn list(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::failed(format!("migrations: cannot read {}: {e}", dir.display()))),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("migration.sql").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Reviews the package's migrations under `dir` that are not in `live`. `path_prefix` is `dir`
/// relative to the repository root (for annotation paths), e.g. `prisma/migrations`.
pub fn review(dir: &Path, path_prefix: &str, live: &[String], against: &str) -> Result<Review> {
    let mut r = Review {
        against: against.to_string(),
        ..Review::default()
    };
    for name in list(dir)?.into_iter().filter(|n| !live.contains(n)) {
        let file = dir.join(&name).join("migration.sql");
        let bytes = std::fs::read(&file)
            .map_err(|e| Error::failed(format!("migrations: cannot read {}: {e}", file.display())))?;
        let sql = String::from_utf8_lossy(&bytes);
        let path = if path_prefix.is_empty() {
            format!("{name}/migration.sql")
        } else {
            format!("{}/{name}/migration.sql", path_prefix.trim_end_matches('/'))
        };
        for (line, what, statement) in flag_sql(&sql) {
            r.flags.push(Flag {
                migration: name.clone(),
                path: path.clone(),
                line,
                what: what.to_string(),
                statement,
            });
        }
        r.pending.push(name);
    }
    Ok(r)
}

/// What a deploy's migrations are compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    /// In words, for the summary.
    pub against: String,
    /// Migrations already there (in the live release, or applied in the database).
    pub applied: Vec<String>,
    /// Whether the policy applies; `false` on a first deploy with nothing to compare with,
    /// where flagged statements only warn (DESIGN.md §7).
    pub enforce: bool,
    /// Why `_prisma_migrations` could not be read, on a first deploy: the policy applies
    /// (only a missing table makes a first deploy warn-only), and a refusal names this.
    pub unread: Option<String>,
}

impl Baseline {
    /// The host's live release and its migrations.
    pub fn live(release: &str, migrations: Vec<String>) -> Self {
        Baseline {
            against: format!("live release {release}"),
            applied: migrations,
            enforce: true,
            unread: None,
        }
    }

    /// No live release: what `_prisma_migrations` says, when the database has the table.
    pub fn first_deploy(applied: applied::Applied) -> Self {
        let mut unread = None;
        let (against, applied, enforce) = match applied {
            applied::Applied::Listed(names) => ("_prisma_migrations (no live release)".to_string(), names, true),
            applied::Applied::NoTable => (
                "no live release and no _prisma_migrations table (first deploy)".to_string(),
                Vec::new(),
                false,
            ),
            applied::Applied::Unknown(why) => {
                unread = Some(format!("_prisma_migrations could not be read: {why}"));
                (
                    format!("no live release (first deploy; _prisma_migrations not read: {why})"),
                    Vec::new(),
                    true,
                )
            }
        };
        Baseline {
            against,
            applied,
            enforce,
            unread,
        }
    }
}

/// The deploy gate against `base`. The review carries the decision; [`Review::verdict`]
/// turns a refusal into an error.
pub fn deploy_verdict(dir: &Path, path_prefix: &str, base: &Baseline, policy: Policy, allowed: bool) -> Result<Review> {
    let mut r = review(dir, path_prefix, &base.applied, &base.against)?;
    (r.decision, r.refused) = match (r.flags.is_empty(), base.enforce, policy, allowed) {
        (true, _, _, _) => ("no destructive statement".to_string(), false),
        (false, false, _, _) => ("first deploy: flagged statements are a warning only".to_string(), false),
        (false, true, Policy::Allow, _) => ("allowed (destructive_migrations = \"allow\")".to_string(), false),
        (false, true, Policy::Confirm, true) => ("allowed by --allow-destructive-migrations".to_string(), false),
        (false, true, Policy::Confirm, false) => (
            "refused: destructive_migrations = \"confirm\" and --allow-destructive-migrations \
             (input allow-destructive-migrations: true) was not given"
                .to_string(),
            true,
        ),
        (false, true, Policy::Refuse, _) => ("refused: destructive_migrations = \"refuse\"".to_string(), true),
    };
    if let (false, Some(why)) = (r.flags.is_empty(), &base.unread) {
        r.decision = format!("{} ({why}; every migration counts as pending)", r.decision);
    }
    Ok(r)
}

impl Review {
    /// `Err(Refused)` naming the statements when the gate refused.
    pub fn verdict(&self) -> Result<()> {
        if !self.refused {
            return Ok(());
        }
        let named = self.flags.iter().map(Flag::describe).collect::<Vec<_>>().join("; ");
        Err(Error::refused(format!(
            "gate destructive migrations: {named}; {}; nothing was changed",
            self.decision
        )))
    }
}

/// The deploy's migration gate on the host `t` (the database host), before anything changes:
/// the package's migrations against `current`'s, or, with no live release, against what
/// `_prisma_migrations` lists as applied.
pub async fn deploy_gate<T: Transport>(
    t: &T,
    l: &Layout,
    current: Option<ReleaseId>,
    config: &Config,
    allowed: bool,
) -> Result<Review> {
    let dir = &config.env.migrations_dir;
    let local = config.package_dir.join(dir);
    let base = match current {
        Some(id) => {
            let out = t
                .run(&commands::list_migrations(l, id, dir), Mode::Capture)
                .await?
                .check(&format!("{}: list migrations", t.name()))?;
            let names = out.stdout.lines().filter(|n| !n.is_empty()).map(str::to_string);
            Baseline::live(&id.to_string(), names.collect())
        }
        // Nothing to review: no need to ask the database.
        None if list(&local)?.is_empty() => Baseline::first_deploy(applied::Applied::NoTable),
        None => {
            let read = applied::read(t, l).await;
            if let applied::Applied::Unknown(why) = &read {
                ui::warn(&format!(
                    "could not read _prisma_migrations ({why}): every migration counts as pending and destructive_migrations applies to them"
                ));
            }
            Baseline::first_deploy(read)
        }
    };
    let policy = config.env.destructive_migrations;
    let r = deploy_verdict(&local, dir, &base, policy, allowed)?;
    for f in &r.flags {
        ui::warn(&format!("destructive migration statement: {}", f.describe()));
    }
    if !r.pending.is_empty() {
        ui::info(&format!(
            "migrations pending against {}: {}; {}",
            r.against,
            r.pending.join(", "),
            r.decision
        ));
    }
    Ok(r)
}

/// A gate decided before the lock, and the live release it was decided against.
#[derive(Debug, Clone)]
pub struct Early {
    pub current: Option<ReleaseId>,
    pub review: Review,
}

/// The gate before anything visible (the lock, the GitHub deployment, Slack): reads the
/// database host's live release, then [`deploy_gate`]. Reads only, within [`EARLY_GATE_LIMIT`]
/// so that a database that does not answer cannot stall the deploy before it starts.
pub async fn early_gate<T: Transport>(t: &T, l: &Layout, config: &Config, allowed: bool) -> Result<Early> {
    let gate = async {
        let state = crate::state::inspect(t, l, None).await?;
        let review = deploy_gate(t, l, state.current, config, allowed).await?;
        Ok(Early {
            current: state.current,
            review,
        })
    };
    tokio::time::timeout(EARLY_GATE_LIMIT, gate).await.unwrap_or_else(|_| {
        Err(Error::failed(format!(
            "gate destructive migrations: {} did not answer within {} s; nothing was changed",
            t.name(),
            EARLY_GATE_LIMIT.as_secs()
        )))
    })
}

/// How long the early migration gate may take (psql itself gives up connecting after 10 s).
pub const EARLY_GATE_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    fn package(migrations: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, sql) in migrations {
            std::fs::create_dir_all(d.path().join(name)).unwrap();
            std::fs::write(d.path().join(name).join("migration.sql"), sql).unwrap();
        }
        std::fs::create_dir_all(d.path().join("not_a_migration")).unwrap();
        std::fs::write(d.path().join("migration_lock.toml"), "provider = \"postgresql\"").unwrap();
        d
    }

    #[test]
    fn pending_is_what_the_live_release_lacks() {
        let d = package(&[("1_init", "CREATE TABLE t (a int);"), ("2_drop", "\n\nDROP TABLE t;")]);
        assert_eq!(list(d.path()).unwrap(), vec!["1_init", "2_drop"]);
        let r = review(d.path(), "prisma/migrations", &["1_init".to_string()], "x").unwrap();
        assert_eq!(r.pending, vec!["2_drop"]);
        assert_eq!(r.flags.len(), 1);
        assert_eq!(r.flags[0].path, "prisma/migrations/2_drop/migration.sql");
        assert_eq!(r.flags[0].line, 3);
        assert!(list(&d.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn the_gate_in_its_three_modes() {
        let d = package(&[("1_init", "CREATE TABLE t (a int);"), ("2_drop", "DROP TABLE t;")]);
        let live = vec!["1_init".to_string()];
        let verdict = |p, allowed, base: &Baseline| deploy_verdict(d.path(), "m", base, p, allowed).unwrap();
        let on = &Baseline::live("20260101_000000", live.clone());
        let r = verdict(Policy::Allow, false, on);
        assert!(r.decision.starts_with("allowed") && r.verdict().is_ok());
        let e = verdict(Policy::Confirm, false, on).verdict().unwrap_err();
        assert_eq!(e.kind, crate::error::Kind::Refused);
        assert!(
            e.message.contains("m/2_drop/migration.sql:1: DROP TABLE"),
            "{}",
            e.message
        );
        let r = verdict(Policy::Confirm, true, on);
        assert!(r.decision.contains("--allow-destructive") && r.verdict().is_ok());
        assert!(verdict(Policy::Refuse, true, on).verdict().is_err());
        // First deploy: a warning only; nothing pending: nothing to decide.
        let none = &Baseline::first_deploy(applied::Applied::NoTable);
        let r = verdict(Policy::Refuse, false, none);
        assert!(r.decision.starts_with("first deploy") && r.verdict().is_ok());
        assert_eq!(r.pending, vec!["1_init", "2_drop"]);
        // First deploy on a database whose _prisma_migrations lists 1_init: 2_drop is refused.
        let listed = &Baseline::first_deploy(applied::Applied::Listed(live.clone()));
        let r = verdict(Policy::Refuse, false, listed);
        assert_eq!(r.pending, vec!["2_drop"]);
        assert!(r.against.contains("_prisma_migrations") && r.verdict().is_err());
        // Unreadable is not "no table": the policy applies, and the refusal says why.
        let unknown = &Baseline::first_deploy(applied::Applied::Unknown("no psql".into()));
        let e = verdict(Policy::Refuse, false, unknown).verdict().unwrap_err();
        assert!(
            e.message.contains("_prisma_migrations could not be read: no psql"),
            "{}",
            e.message
        );
        assert!(verdict(Policy::Confirm, false, unknown).verdict().is_err());
        assert!(verdict(Policy::Confirm, true, unknown).verdict().is_ok());
        let r = verdict(Policy::Allow, false, unknown);
        assert!(
            r.verdict().is_ok() && r.decision.starts_with("allowed"),
            "{}",
            r.decision
        );
        let clean = package(&[("1_init", "CREATE TABLE t (a int);")]);
        let r = deploy_verdict(clean.path(), "m", unknown, Policy::Refuse, false).unwrap();
        assert!(r.verdict().is_ok() && r.decision == "no destructive statement");
        let all = vec!["1_init".to_string(), "2_drop".to_string()];
        let r = verdict(Policy::Refuse, false, &Baseline::live("x", all));
        assert!(r.pending.is_empty() && r.flags.is_empty() && r.verdict().is_ok());
        assert!(Policy::parse("k", "maybe").unwrap_err().message.starts_with("k:"));
    }
}
