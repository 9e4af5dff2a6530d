//! What `init` finds in an app's repository: the app name, package manager, Prisma, Next.js,
//! the entry file, an existing ecosystem file and the git branches.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::ecosystem::Entry;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Project {
    pub app: String,
    /// Where the name came from: "package.json" or "the directory name".
    pub app_source: String,
    pub manager: Manager,
    /// The lockfile found, if any.
    pub lockfile: Option<&'static str>,
    pub prisma: bool,
    pub next: bool,
    pub entry: Entry,
    /// An ecosystem file already there (`ecosystem.config.js`, `.cjs` or `ecosystem.json`).
    pub ecosystem: Option<&'static str>,
    pub production_branch: Branch,
    pub staging_branch: Branch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Npm,
    Yarn,
    Pnpm,
}

impl Manager {
    /// The production install on the host, from the lockfile.
    pub fn install(self, locked: bool) -> &'static str {
        match (self, locked) {
            (Manager::Npm, true) => "npm ci --omit=dev",
            (Manager::Npm, false) => "npm install --omit=dev",
            (Manager::Yarn, _) => "yarn install --frozen-lockfile --production",
            (Manager::Pnpm, _) => "pnpm install --prod --frozen-lockfile",
        }
    }

    /// The full install in the workflow's build step (devDependencies included, for the build).
    pub fn ci_install(self) -> &'static str {
        match self {
            Manager::Npm => "npm ci",
            Manager::Yarn => "yarn install --frozen-lockfile",
            Manager::Pnpm => "corepack enable && pnpm install --frozen-lockfile",
        }
    }
}

/// A branch name, and whether git has it (else it is the conventional default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    pub name: String,
    pub found: bool,
}

impl Project {
    pub fn detect(dir: &Path) -> Result<Project> {
        let pkg = read_package_json(dir)?;
        let (app, app_source) = match pkg.as_ref().and_then(|p| p["name"].as_str()).and_then(app_name) {
            Some(n) => (n, "package.json".to_string()),
            None => (
                dir.canonicalize()
                    .ok()
                    .and_then(|d| d.file_name().and_then(|n| n.to_str()).and_then(app_name))
                    .unwrap_or_else(|| "app".to_string()),
                "the directory name; package.json has no usable name".to_string(),
            ),
        };
        let lockfiles = [
            ("pnpm-lock.yaml", Manager::Pnpm),
            ("yarn.lock", Manager::Yarn),
            ("package-lock.json", Manager::Npm),
            ("npm-shrinkwrap.json", Manager::Npm),
        ];
        let found = lockfiles.iter().find(|(f, _)| dir.join(f).is_file());
        let (lockfile, manager) = match found {
            Some((f, m)) => (Some(*f), *m),
            None => (None, Manager::Npm),
        };
        let has_dep = |name: &str| {
            pkg.as_ref().is_some_and(|p| {
                ["dependencies", "devDependencies"]
                    .iter()
                    .any(|k| p[k].get(name).is_some())
            })
        };
        let next = has_dep("next");
        let start = pkg
            .as_ref()
            .and_then(|p| p["scripts"]["start"].as_str())
            .map(str::to_string);
        let entry = entry(dir, next, start.as_deref());
        let ecosystem = ["ecosystem.config.js", "ecosystem.config.cjs", "ecosystem.json"]
            .into_iter()
            .find(|f| dir.join(f).is_file());
        let branches = git_branches(dir);
        let has = |b: &str| branches.iter().any(|x| x == b);
        let production_branch = match ["main", "master"].into_iter().find(|b| has(b)) {
            Some(b) => Branch {
                name: b.into(),
                found: true,
            },
            None => Branch {
                name: "main".into(),
                found: false,
            },
        };
        let staging_branch = Branch {
            name: "develop".into(),
            found: has("develop"),
        };
        Ok(Project {
            app,
            app_source,
            manager,
            lockfile,
            prisma: dir.join("prisma/schema.prisma").is_file(),
            next,
            entry,
            ecosystem,
            production_branch,
            staging_branch,
        })
    }
}

fn read_package_json(dir: &Path) -> Result<Option<Value>> {
    let path = dir.join("package.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::invalid(format!("{}: not valid JSON: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::invalid(format!("{}: {e}", path.display()))),
    }
}

/// A package name as tj-deploy's `app` (letters, digits, `.`, `_`, `-`): `@scope/` dropped,
/// anything else turned into `-`.
fn app_name(name: &str) -> Option<String> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let clean = clean
        .trim_start_matches(['-', '.'])
        .chars()
        .take(64)
        .collect::<String>();
    (!clean.is_empty()).then_some(clean)
}

/// What PM2 runs: Next.js's own binary; else the file the `start` script runs with node; else
/// server.js or index.js.
fn entry(dir: &Path, next: bool, start: Option<&str>) -> Entry {
    if next {
        return Entry {
            script: "node_modules/next/dist/bin/next".into(),
            args: Some("start".into()),
            note: "Next.js: its own binary, so the workers are the app".into(),
        };
    }
    if let Some(file) = start.and_then(node_script) {
        return Entry {
            script: file,
            args: None,
            note: "the file package.json's start script runs".into(),
        };
    }
    for f in ["server.js", "index.js"] {
        if dir.join(f).is_file() {
            return Entry {
                script: f.into(),
                args: None,
                note: format!("{f} found; no `node <file>` start script"),
            };
        }
    }
    Entry {
        script: "server.js".into(),
        args: None,
        note: "FILL IN: the app's entry file (none found)".into(),
    }
}

/// The file in a `node [flags] FILE` start script (`NODE_ENV=production node server.js`).
fn node_script(start: &str) -> Option<String> {
    let mut words = start
        .split_whitespace()
        .skip_while(|w| w.contains('=') && !w.starts_with('-'));
    if words.next()? != "node" {
        return None;
    }
    let mut takes_value = false;
    for w in words {
        if takes_value {
            takes_value = false;
        } else if w.starts_with('-') {
            takes_value = ["-r", "--require", "--import", "--loader", "--env-file"].contains(&w);
        } else {
            return Some(w.trim_start_matches("./").to_string());
        }
    }
    None
}

/// Local branches and origin's, by short name; empty outside a git repository.
fn git_branches(dir: &Path) -> Vec<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "for-each-ref",
            "--format=%(refname)",
            "refs/heads",
            "refs/remotes/origin",
        ])
        .output();
    let mut names: Vec<String> = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|r| r.strip_prefix("refs/heads/").or(r.strip_prefix("refs/remotes/origin/")))
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    // A fresh repository's branch has no commit yet, so no ref: HEAD still names it.
    if let Ok(o) = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["symbolic-ref", "--short", "HEAD"])
        .output()
        && o.status.success()
    {
        names.push(String::from_utf8_lossy(&o.stdout).trim().to_string());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_scripts() {
        assert_eq!(node_script("node server.js").as_deref(), Some("server.js"));
        assert_eq!(
            node_script("NODE_ENV=production node ./dist/main.js").as_deref(),
            Some("dist/main.js")
        );
        assert_eq!(
            node_script("node -r dotenv/config --enable-source-maps build/index.js").as_deref(),
            Some("build/index.js")
        );
        assert_eq!(node_script("next start"), None);
        assert_eq!(node_script("ts-node src/index.ts"), None);
        assert_eq!(node_script("node"), None);
    }

    #[test]
    fn app_names() {
        assert_eq!(app_name("@acme/trading journal").as_deref(), Some("trading-journal"));
        assert_eq!(app_name("shop").as_deref(), Some("shop"));
        assert_eq!(app_name("..."), None);
        assert_eq!(app_name(""), None);
    }
}
