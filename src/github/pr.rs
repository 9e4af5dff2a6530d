//! The pull-request side of `check`'s migration review: which migrations the base branch
//! already has — from the checkout's git history when the base commit is in it, else from the
//! GitHub compare API (the action image has no git, and `actions/checkout` fetches one commit)
//! — and the migration files' paths relative to the repository root, for annotations.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::client::Github;
use crate::config::{Config, Invocation, Sha};
use crate::migrations::{self, Review};
use crate::ui;

/// The repository root holding `start`: `GITHUB_WORKSPACE` when `start` lies inside it, else
/// the nearest ancestor with a `.git`.
pub fn repo_root(start: &Path, workspace: Option<&str>) -> Option<PathBuf> {
    let start = start.canonicalize().ok()?;
    if let Some(w) = workspace.and_then(|w| Path::new(w).canonicalize().ok())
        && start.starts_with(&w)
    {
        return Some(w);
    }
    start
        .ancestors()
        .find(|a| a.join(".git").exists())
        .map(Path::to_path_buf)
}

/// The migration names (`<prefix>/<name>/migration.sql`) among repository-relative file names.
fn names_in<'a>(files: impl Iterator<Item = &'a str>, prefix: &str) -> Vec<String> {
    files
        .filter_map(|f| {
            let rest = if prefix.is_empty() {
                f
            } else {
                f.strip_prefix(prefix)?.strip_prefix('/')?
            };
            let name = rest.strip_suffix("/migration.sql")?;
            (!name.is_empty() && !name.contains('/')).then(|| name.to_string())
        })
        .collect()
}

/// The migrations at commit `base`, when the checkout at `root` has that commit.
fn from_git(root: &Path, base: &str, prefix: &str) -> Option<Vec<String>> {
    let mut c = Command::new("git");
    c.arg("-C").arg(root).args(["ls-tree", "-r", "--name-only", base]);
    if !prefix.is_empty() {
        c.args(["--", &format!("{prefix}/")]);
    }
    let out = c.output().ok().filter(|o| o.status.success())?;
    Some(names_in(String::from_utf8_lossy(&out.stdout).lines(), prefix))
}

/// The migrations the pull request adds, from GitHub's compare of `base...head`.
async fn added_by_compare(gh: &Github, base: &str, head: &str, prefix: &str) -> crate::error::Result<Vec<String>> {
    let c = gh.get(&gh.repo_path(&format!("/compare/{base}...{head}"))).await?;
    let files = c["files"].as_array().map(Vec::as_slice).unwrap_or_default();
    // GitHub lists at most 300 files: past that a new migration may be missing from the list,
    // so the caller reviews every migration instead.
    if files.len() >= 300 {
        return Err(crate::error::Error::failed(
            "the compare lists 300 files, GitHub's cap: the pull request may add more",
        ));
    }
    let added = files
        .iter()
        .filter(|f| matches!(f["status"].as_str(), Some("added" | "renamed" | "copied")))
        .filter_map(|f| f["filename"].as_str());
    Ok(names_in(added, prefix))
}

/// Reviews the migrations a pull request brings; `None` outside a pull request.
pub async fn review(config: &Config, inv: &Invocation, gh: Option<&Github>, head: &Sha) -> Option<Review> {
    let pr = inv.pull_request.as_ref()?;
    let dir = config.package_dir.join(&config.env.migrations_dir);
    let package = match migrations::list(&dir) {
        Ok(p) => p,
        Err(e) => {
            ui::warn(&format!("migration review skipped: {e}"));
            return None;
        }
    };
    let root = repo_root(&config.package_dir, inv.github.workspace.as_deref());
    let prefix = root
        .as_ref()
        .and_then(|r| {
            let abs = config.package_dir.canonicalize().ok()?.join(&config.env.migrations_dir);
            Some(abs.strip_prefix(r).ok()?.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| config.env.migrations_dir.clone());
    let base = pr.base_sha.as_deref();
    let mut against = format!("the base branch {}", pr.base_ref);
    let git = base.zip(root.as_deref()).and_then(|(b, r)| from_git(r, b, &prefix));
    let live = match (git, base, gh) {
        (Some(live), _, _) => live,
        (None, Some(b), Some(gh)) => match added_by_compare(gh, b, head.as_str(), &prefix).await {
            Ok(added) => package.iter().filter(|n| !added.contains(n)).cloned().collect(),
            Err(e) => {
                ui::warn(&format!("could not compare with the base branch: {e}"));
                against.push_str(" (unknown: every migration reviewed)");
                Vec::new()
            }
        },
        _ => {
            against.push_str(" (not in the checkout and no GitHub token: every migration reviewed)");
            Vec::new()
        }
    };
    match migrations::review(&dir, &prefix, &live, &against) {
        Ok(r) => Some(r),
        Err(e) => {
            ui::warn(&format!("migration review skipped: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_names_from_repository_paths() {
        let files = [
            "prisma/migrations/1_init/migration.sql",
            "prisma/migrations/migration_lock.toml",
            "prisma/migrations/2_x/other.sql",
            "prisma/migrations2/3_y/migration.sql",
            "app/prisma/migrations/4_z/migration.sql",
        ];
        assert_eq!(names_in(files.into_iter(), "prisma/migrations"), vec!["1_init"]);
        assert_eq!(names_in(["5_a/migration.sql"].into_iter(), ""), vec!["5_a"]);
    }
}
