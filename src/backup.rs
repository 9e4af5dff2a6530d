//! Backups taken before anything changes: a `pg_dump -Fc` of the app's database and a tar.gz
//! of the live release, with a manifest of sha256s. Written to a partial directory and renamed
//! into `<backup_dir>/<id>/` only when complete, so a listed backup is always whole.

use serde::{Deserialize, Serialize};

use crate::config::ReleaseId;
use crate::error::{Error, Result};
use crate::remote::layout::Layout;
use crate::remote::{Mode, Transport, commands};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupFile {
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

impl Manifest {
    pub fn file(&self, name: &str) -> Option<&BackupFile> {
        self.files.iter().find(|f| f.name == name)
    }
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
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
}

fn parse_files(stdout: &str) -> Result<Vec<BackupFile>> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("file "))
        .map(|l| {
            let parts: Vec<&str> = l.split(' ').collect();
            match parts.as_slice() {
                [name, sha, size] if sha.len() == 64 => Ok(BackupFile {
                    name: name.to_string(),
                    sha256: sha.to_string(),
                    size: size
                        .parse()
                        .map_err(|_| Error::failed(format!("backup: bad size in {l:?}")))?,
                }),
                _ => Err(Error::failed(format!("backup: unexpected line {l:?}"))),
            }
        })
        .collect()
}

/// Takes the backup; on any failure nothing is left behind and the error says why.
pub async fn take<T: Transport>(t: &T, l: &Layout, req: &Request<'_>) -> Result<Manifest> {
    let what = format!("{}: backup", t.name());
    let live_id = req.live.as_ref().map(|(id, _)| *id);
    let out = t
        .run(&commands::backup_files(l, req.id, live_id, req.database), Mode::Stream)
        .await?
        .check(&what)?;
    let files = parse_files(&out.stdout)?;
    let manifest = Manifest {
        id: req.id.to_string(),
        kind: req.kind.to_string(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        environment: req.environment.to_string(),
        release: live_id.map(|i| i.to_string()),
        commit: req.live.as_ref().and_then(|(_, c)| c.clone()),
        deploying: req.deploying.clone(),
        files,
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

/// The app part of a backup (no database), finished with its manifest: the prepare phase
/// takes it on every host.
pub async fn take_app<T: Transport>(t: &T, l: &Layout, req: &Request<'_>) -> Result<Manifest> {
    take(
        t,
        l,
        &Request {
            database: false,
            ..req.clone()
        },
    )
    .await
}

/// Adds `db.dump` to the complete backup `id` (taken by [`take_app`] on this host) and
/// rewrites its manifest: the database phase, once per environment.
pub async fn take_database<T: Transport>(t: &T, l: &Layout, id: ReleaseId) -> Result<Manifest> {
    let what = format!("{}: database backup", t.name());
    let out = t
        .run(&commands::database_dump(l, id), Mode::Stream)
        .await?
        .check(&what)?;
    let files = parse_files(&out.stdout)?;
    let mut manifest = manifests(t, l)
        .await?
        .into_iter()
        .find(|(b, _)| *b == id)
        .map(|(_, m)| m)
        .ok_or_else(|| Error::failed(format!("{what}: backup {id} has no readable manifest")))?;
    manifest.files.retain(|f| f.name != "db.dump");
    manifest.files.extend(files);
    let json = serde_json::to_string(&manifest).map_err(|e| Error::failed(e.to_string()))?;
    t.run(&commands::rewrite_manifest(l, id, &json), Mode::Capture)
        .await?
        .check(&what)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_lines() {
        let sha = "a".repeat(64);
        let files = parse_files(&format!("noise\nfile app.tar.gz {sha} 123\nfile db.dump {sha} 9\n")).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(
            files[0],
            BackupFile {
                name: "app.tar.gz".into(),
                sha256: sha.clone(),
                size: 123
            }
        );
        assert!(parse_files("file x y z\n").is_err());
    }
}
