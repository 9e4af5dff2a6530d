//! Backups taken before anything changes, private to the deploy user (umask 077): the live
//! release's package as a hard link of `.tj-deploy/packages/<sha256>.tar.gz` (a tar.gz without
//! `node_modules` for a release tj-deploy did not make), its linked files, the lockfile's
//! sha256, and a `pg_dump -Fc` of the app's database on the database host, with a manifest of
//! sha256s. The app part is written to a partial directory and renamed into
//! `<backup_dir>/<id>/` only when complete, so a listed backup is always whole; the dump is
//! added to it afterwards and the manifest rewritten atomically. The database password comes
//! from `shared/.env`, parsed here as dotenv, and reaches libpq through a private `.pgpass`.

use serde::{Deserialize, Serialize};

use crate::config::ReleaseId;
use crate::error::{Error, Result};
use crate::pgconn::PgConn;
use crate::remote::layout::Layout;
use crate::remote::{Mode, Transport, commands};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupFile {
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub id: String,
    /// `pre-deploy` or `safety`.
    pub kind: String,
    pub created_at: String,
    pub environment: String,
    /// The release that was live and is saved in app.tar.gz.
    pub release: Option<String>,
    /// That release's commit.
    pub commit: Option<String>,
    /// What was being deployed when this backup was taken.
    pub deploying: Option<String>,
    pub files: Vec<BackupFile>,
    /// How the app part is kept: `package` (package.tar.gz) or `tree` (app.tar.gz without
    /// node_modules); absent in older backups, whose app.tar.gz held the whole release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The sha256 of the package `package.tar.gz` links; absent for a tree or an older backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The live release's lockfile, which names its dependencies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockfile: Option<Lockfile>,
    /// What the host said while taking it (readable shared files, tightened modes, a copy
    /// instead of a hard link): for the run's summary, not stored.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lockfile {
    pub name: String,
    pub sha256: String,
}

impl Manifest {
    pub fn file(&self, name: &str) -> Option<&BackupFile> {
        self.files.iter().find(|f| f.name == name)
    }
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
    /// The archive a release can be recreated from: the package, or a tree (with
    /// `node_modules` in backups older than packages, without it since).
    pub fn app_archive(&self) -> Option<&BackupFile> {
        self.file("package.tar.gz").or_else(|| self.file("app.tar.gz"))
    }
    /// Whether a release restored from this backup needs its dependencies installed: yes
    /// unless it is an older backup whose app.tar.gz held the whole release.
    pub fn restore_needs_dependencies(&self) -> bool {
        self.app.is_some()
    }
}

/// Reads every complete backup's manifest, newest first; unreadable ones are skipped with a warning.
pub async fn manifests<T: Transport>(t: &T, l: &Layout) -> Result<Vec<(ReleaseId, Manifest)>> {
    let out = t
        .run(&commands::read_manifests(l), Mode::Capture)
        .await?
        .check(&format!("{}: read backups", t.name()))?;
    let mut list = Vec::new();
    for line in out.stdout.lines() {
        let Some((id, json)) = line.strip_prefix("manifest ").and_then(|r| r.split_once(' ')) else {
            continue;
        };
        let Some(id) = ReleaseId::from_name(id) else { continue };
        match serde_json::from_str::<Manifest>(json) {
            Ok(m) => list.push((id, m)),
            Err(e) => crate::ui::warn(&format!("{}: backup {id}: unreadable manifest.json ({e})", t.name())),
        }
    }
    list.sort_by_key(|b| std::cmp::Reverse(b.0));
    Ok(list)
}

#[derive(Clone)]
pub struct Request<'a> {
    pub id: ReleaseId,
    pub kind: &'a str,
    pub environment: &'a str,
    pub live: Option<(ReleaseId, Option<String>)>,
    pub database: bool,
    pub deploying: Option<String>,
    /// The environment's `linked_files`: copied (private) into the backup.
    pub linked_files: &'a [String],
}

/// What the app script printed besides its files.
#[derive(Debug, Default, PartialEq)]
struct AppFacts {
    files: Vec<BackupFile>,
    package: Option<String>,
    copied: bool,
    tree: bool,
    lockfile: Option<Lockfile>,
    readable: Vec<String>,
    tightened: usize,
    tightened_dir: bool,
}

fn parse_file(l: &str) -> Result<BackupFile> {
    let mut parts = l.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(sha), Some(size), Some(name)) if sha.len() == 64 && !name.is_empty() => Ok(BackupFile {
            name: name.to_string(),
            sha256: sha.to_string(),
            size: size
                .parse()
                .map_err(|_| Error::failed(format!("backup: bad size in {l:?}")))?,
        }),
        _ => Err(Error::failed(format!("backup: unexpected line {l:?}"))),
    }
}

fn parse_app(stdout: &str) -> Result<AppFacts> {
    let mut f = AppFacts::default();
    for line in stdout.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        if let Some(rest) = line.strip_prefix("file ") {
            f.files.push(parse_file(rest)?);
        } else if let Some(rest) = line.strip_prefix("readable ") {
            f.readable.push(rest.to_string());
        } else {
            match words.as_slice() {
                ["app", "package", sha, how] if sha.len() == 64 => {
                    f.package = Some(sha.to_string());
                    f.copied = *how == "copied";
                }
                ["app", "tree"] => f.tree = true,
                ["lockfile", name, sha] if sha.len() == 64 => {
                    f.lockfile = Some(Lockfile {
                        name: name.to_string(),
                        sha256: sha.to_string(),
                    })
                }
                ["tightened", n, dir] => {
                    f.tightened = n.parse().unwrap_or(0);
                    f.tightened_dir = *dir == "1";
                }
                _ => {}
            }
        }
    }
    f.files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(f)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The app part of backup `req.id`, finished with its manifest: the live release's package
/// (hard link), linked files and lockfile hash, or only a manifest when nothing is live. On
/// failure nothing is left behind. Backups older than private modes are tightened here.
pub async fn take_app<T: Transport>(t: &T, l: &Layout, req: &Request<'_>) -> Result<Manifest> {
    let what = format!("{}: backup", t.name());
    let live_id = req.live.as_ref().map(|(id, _)| *id);
    let out = t
        .run(
            &commands::backup_app(l, req.id, live_id, req.linked_files),
            Mode::Capture,
        )
        .await?
        .check(&what)?;
    let facts = parse_app(&out.stdout)?;
    let mut warnings = Vec::new();
    if facts.tightened > 0 || facts.tightened_dir {
        let msg = format!(
            "{}: made {} older backup(s){} in {} private to the deploy user (chmod -R go-rwx): they were readable by other accounts",
            t.name(),
            facts.tightened,
            if facts.tightened_dir { " and the directory" } else { "" },
            l.backup_dir
        );
        crate::ui::info(&msg);
        warnings.push(msg);
    }
    for f in &facts.readable {
        let path = format!("{}/{f}", l.shared());
        let msg = format!(
            "{}: {path} is readable by other accounts on the host; fix: chmod -R go-rwx {}",
            t.name(),
            commands::quote(&path)
        );
        crate::ui::warn(&msg);
        warnings.push(msg);
    }
    if facts.copied {
        let msg = format!(
            "{}: {} is on another filesystem than {}: the package was copied (reflink where possible), not hard-linked",
            t.name(),
            l.backup_dir,
            l.deploy_dir
        );
        crate::ui::info(&msg);
        warnings.push(msg);
    }
    let manifest = Manifest {
        id: req.id.to_string(),
        kind: req.kind.to_string(),
        created_at: now(),
        environment: req.environment.to_string(),
        release: live_id.map(|i| i.to_string()),
        commit: req.live.as_ref().and_then(|(_, c)| c.clone()),
        deploying: req.deploying.clone(),
        files: facts.files,
        app: if facts.package.is_some() {
            Some("package".into())
        } else if facts.tree {
            Some("tree".into())
        } else {
            None
        },
        package: facts.package,
        lockfile: facts.lockfile,
        warnings,
    };
    let json = serde_json::to_string(&manifest).map_err(|e| Error::failed(e.to_string()))?;
    let finish = t
        .run(&commands::backup_finish(l, req.id, &json), Mode::Capture)
        .await?
        .check(&what);
    if finish.is_err() {
        let _ = t.run(&commands::backup_discard(l, req.id), Mode::Capture).await;
    }
    finish?;
    Ok(manifest)
}

/// The libpq connection of the app: `DATABASE_URL` from `<deploy_dir>/shared/.env`, read over
/// the transport and parsed as dotenv here (never sourced by a shell). `why` starts errors.
pub async fn database_conn<T: Transport>(t: &T, l: &Layout, why: &str) -> Result<PgConn> {
    let out = t.run(&commands::read_env(l), Mode::Capture).await?;
    let env_file = format!("{}/.env", l.shared());
    match out.code {
        Some(0) => {}
        Some(3) => return Err(Error::failed(format!("{}: {why} {env_file} does not exist", t.name()))),
        // Never echo stdout here: it is the .env, secrets and all.
        _ => {
            return Err(Error::failed(format!(
                "{}: {why} cannot read {env_file}: {}",
                t.name(),
                out.stderr.trim()
            )));
        }
    }
    if out.stdout.len() > 1 << 20 {
        return Err(Error::failed(format!(
            "{}: {why} {env_file} is larger than 1 MiB",
            t.name()
        )));
    }
    let env = crate::dotenv::parse(&out.stdout);
    let url = env
        .get("DATABASE_URL")
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| Error::failed(format!("{}: {why} DATABASE_URL is not set in {env_file}", t.name())))?;
    let conn =
        PgConn::parse(url).map_err(|e| Error::failed(format!("{}: {why} {env_file}: {}", t.name(), e.message)))?;
    if let Some(p) = conn.password() {
        crate::ui::mask(p);
    }
    if !conn.dropped_unknown.is_empty() {
        crate::ui::warn(&format!(
            "{}: DATABASE_URL parameters unknown to libpq left out of pg_dump/pg_restore: {}",
            t.name(),
            conn.dropped_unknown.join(", ")
        ));
    }
    Ok(conn)
}

/// Adds a `pg_dump -Fc` to backup `id` (creating the backup, with a manifest of its own, when
/// the host had no live release) and rewrites manifest.json atomically. Returns the manifest.
pub async fn take_database<T: Transport>(t: &T, l: &Layout, id: ReleaseId, environment: &str) -> Result<Manifest> {
    let what = format!("{}: database backup", t.name());
    let conn = database_conn(t, l, "database_backup is on but").await?;
    let script = commands::backup_database(l, id, &conn)?;
    let out = t.run(&script, Mode::Capture).await?.check(&what)?;
    let created = out.stdout.lines().any(|l| l == "created");
    let dump = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("file "))
        .map(parse_file)
        .next()
        .ok_or_else(|| Error::failed(format!("{what}: no db.dump reported")))??;
    // A manifest that is there but cannot be read is an error: replacing it would lose the
    // backup's app part.
    let existing = match out.stdout.lines().find_map(|l| l.strip_prefix("manifest ")) {
        Some(j) => Some(
            serde_json::from_str::<Manifest>(j)
                .map_err(|e| Error::failed(format!("{what}: backup {id} has an unreadable manifest.json ({e})")))?,
        ),
        None => None,
    };
    let mut manifest = existing.unwrap_or_else(|| Manifest {
        id: id.to_string(),
        kind: "pre-deploy".into(),
        created_at: now(),
        environment: environment.to_string(),
        ..Manifest::default()
    });
    manifest.files.retain(|f| f.name != "db.dump");
    manifest.files.push(dump);
    let json = serde_json::to_string(&manifest).map_err(|e| Error::failed(e.to_string()))?;
    let written = t
        .run(&commands::manifest_write(l, id, &json), Mode::Capture)
        .await?
        .check(&what);
    if written.is_err() && created {
        let _ = t.run(&commands::remove(l, &[], &[id]), Mode::Capture).await;
    }
    written?;
    Ok(manifest)
}

/// Takes the whole backup on one host: [`take_app`], then [`take_database`] when asked. On
/// any failure nothing is left behind and the error says why.
pub async fn take<T: Transport>(t: &T, l: &Layout, req: &Request<'_>) -> Result<Manifest> {
    let app = take_app(t, l, req).await?;
    if !req.database {
        return Ok(app);
    }
    match take_database(t, l, req.id, req.environment).await {
        Ok(mut m) => {
            m.warnings = app.warnings;
            Ok(m)
        }
        Err(e) => {
            let _ = t.run(&commands::remove(l, &[], &[req.id]), Mode::Capture).await;
            Err(e)
        }
    }
}

/// Recreates release `release` from backup `backup` (see [`commands::restore_release`]).
/// Returns whether its dependencies still need installing (the backup kept a package or a
/// tree without `node_modules`).
pub async fn restore_release<T: Transport>(
    t: &T,
    l: &Layout,
    backup: ReleaseId,
    manifest: &Manifest,
    release: ReleaseId,
    linked_files: &[String],
) -> Result<bool> {
    let file = manifest.app_archive().ok_or_else(|| {
        Error::failed(format!(
            "{}: backup {backup} has no application archive to restore",
            t.name()
        ))
    })?;
    let archive = commands::AppArchive {
        name: &file.name,
        sha256: &file.sha256,
        commit: manifest.commit.as_deref(),
    };
    let script = commands::restore_release(l, backup, release, &archive, linked_files);
    let what = format!("{}: restore release {release} from backup {backup}", t.name());
    t.run(&script, Mode::Capture).await?.check(&what)?;
    Ok(manifest.restore_needs_dependencies())
}

/// Restores the database from backup `backup`'s db.dump as it was dumped (see
/// [`crate::dbrestore`]), the password through a private `.pgpass`. Returns what was dropped.
pub async fn restore_database<T: Transport>(
    t: &T,
    l: &Layout,
    backup: ReleaseId,
    manifest: &Manifest,
) -> Result<Vec<String>> {
    crate::dbrestore::restore(t, l, backup, manifest).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_app_output() {
        let sha = "a".repeat(64);
        let b = "b".repeat(64);
        let out = format!(
            "tightened 2 1\nreadable .env\napp package {sha} linked\nlockfile package-lock.json {b}\nfile {sha} 123 package.tar.gz\nfile {b} 9 shared/my file.env\n"
        );
        let f = parse_app(&out).unwrap();
        assert_eq!(f.package.as_deref(), Some(sha.as_str()));
        assert!(!f.copied && !f.tree);
        assert_eq!(f.tightened, 2);
        assert!(f.tightened_dir);
        assert_eq!(f.readable, vec![".env"]);
        assert_eq!(f.lockfile.as_ref().map(|l| l.name.as_str()), Some("package-lock.json"));
        assert_eq!(f.files[1].name, "shared/my file.env");
        assert_eq!(f.files[0].size, 123);
        assert!(parse_app("file x y z\n").is_err());
        assert!(parse_app("app tree\n").unwrap().tree);
    }

    #[test]
    fn older_manifests_still_read_and_restore_whole() {
        let m: Manifest = serde_json::from_str(
            r#"{"id":"20260101_000000","kind":"pre-deploy","created_at":"x","environment":"s","release":"20250101_000000","commit":null,"deploying":null,"files":[{"name":"app.tar.gz","sha256":"a","size":1}]}"#,
        )
        .unwrap();
        assert!(!m.restore_needs_dependencies());
        assert_eq!(m.app_archive().map(|f| f.name.as_str()), Some("app.tar.gz"));
    }
}
