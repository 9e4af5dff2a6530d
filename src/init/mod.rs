//! `tj-deploy init`: from an app's repository to a configuration and workflows in one command.
//! Writes `tj-deploy.toml`, `ecosystem.config.js` and the four workflows of
//! `examples/workflows/`, filled from what [`detect`] finds; overwrites nothing without
//! `--force`; ends with the list of what is left to the user.

mod detect;
pub mod ecosystem;

use std::path::Path;

pub use detect::{Branch, Manager, Project};
pub use ecosystem::ecosystem_warnings;

use crate::error::{Error, Result};
use crate::ui;

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Wrote,
    Rewrote,
    Unchanged,
    /// It exists and differs; left alone (no `--force`).
    Kept,
}

/// Runs `init` in `dir`; prints what it wrote, skipped and what is left.
pub fn command(dir: &Path, force: bool) -> Result<()> {
    if !dir.is_dir() {
        return Err(Error::invalid(format!("--dir: {} is not a directory", dir.display())));
    }
    let p = Project::detect(dir)?;
    println!("tj-deploy init in {}", dir.display());
    for line in found(&p) {
        println!("  found: {line}");
    }
    let mut outcomes = Vec::new();
    let mut write = |rel: &str, text: &str, note: &str| -> Result<Outcome> {
        let o = write_file(dir, rel, text, force)?;
        let (word, note) = match o {
            Outcome::Wrote => ("wrote", note.to_string()),
            Outcome::Rewrote => ("rewrote", "--force".to_string()),
            Outcome::Unchanged => ("unchanged", String::new()),
            Outcome::Kept => ("kept", "exists and differs; --force rewrites it".to_string()),
        };
        println!(
            "  {word:<10} {rel}{}",
            if note.is_empty() { note } else { format!("  ({note})") }
        );
        outcomes.push(o);
        Ok(o)
    };
    write("tj-deploy.toml", &render_config(&p), "staging and production")?;
    match p.ecosystem {
        Some(existing) if existing != "ecosystem.config.js" => {
            println!("  kept       {existing}  (tj-deploy.toml's reload uses it)");
            lint_existing(dir, existing);
        }
        _ => {
            let note = format!("script: {} — {}", script_line(&p.entry), p.entry.note);
            if write("ecosystem.config.js", &ecosystem::render(&p.app, &p.entry), &note)? == Outcome::Kept {
                lint_existing(dir, "ecosystem.config.js");
            }
        }
    }
    for (rel, text) in workflows(&p) {
        write(&rel, &text, "")?;
    }
    if outcomes.iter().all(|o| matches!(o, Outcome::Unchanged | Outcome::Kept)) {
        println!("Nothing changed: every file was already there (--force rewrites those that differ).");
    }
    println!();
    print!("{}", what_is_left(&p));
    Ok(())
}

fn found(p: &Project) -> Vec<String> {
    let branch = |b: &Branch, env: &str| {
        let seen = if b.found { "" } else { ", not in git yet" };
        format!("{} → {env}{seen}", b.name)
    };
    let mut lines = vec![
        format!("app {:?} (from {})", p.app, p.app_source),
        match p.lockfile {
            Some(f) => format!("{f} → {}", p.manager.install(true)),
            None => format!("no lockfile → {}", p.manager.install(false)),
        },
    ];
    if p.next {
        lines.push("Next.js".into());
    }
    if p.prisma {
        lines.push("prisma/schema.prisma → migrate with prisma migrate deploy".into());
    }
    if let Some(e) = p.ecosystem {
        lines.push(format!("{e} (exists)"));
    }
    lines.push(format!(
        "branches: {}, {}",
        branch(&p.production_branch, "production"),
        branch(&p.staging_branch, "staging")
    ));
    lines
}

fn script_line(e: &ecosystem::Entry) -> String {
    match &e.args {
        Some(a) => format!("{} {a}", e.script),
        None => e.script.clone(),
    }
}

/// Prints the static check's warnings for an ecosystem file that stays as it is.
fn lint_existing(dir: &Path, rel: &str) {
    let text = match std::fs::read_to_string(dir.join(rel)) {
        Ok(t) => t,
        Err(e) => return ui::warn(&format!("{rel}: cannot read it: {e}")),
    };
    // The deploy's own lint (the file evaluated with node, as PM2 would) where node exists;
    // the static reading of the text where it does not.
    let reload = format!("pm2 startOrReload {rel} --update-env");
    // Where the environments' deploy_dir is not known yet: the lint names it so.
    let current = "<deploy_dir>/current";
    match crate::ecosystem::lint_local(dir, Some(&reload), current, crate::ecosystem::DRAIN_TIMEOUT) {
        crate::ecosystem::Local::Checked(w) if w.is_empty() => println!("  {rel}: the ecosystem lint found nothing"),
        crate::ecosystem::Local::Checked(w) => w.iter().for_each(|w| ui::warn(w)),
        _ => {
            let warnings = ecosystem_warnings(&text);
            if warnings.is_empty() {
                println!("  {rel}: no warnings from the static check (no node here to evaluate it)");
            }
            for w in warnings {
                ui::warn(&format!("{rel}: {w}"));
            }
        }
    }
}

/// Writes `rel` under `dir` unless it exists (then: unchanged, kept, or rewritten with `force`).
fn write_file(dir: &Path, rel: &str, text: &str, force: bool) -> Result<Outcome> {
    let path = dir.join(rel);
    let outcome = match std::fs::read(&path) {
        Ok(old) if old == text.as_bytes() => return Ok(Outcome::Unchanged),
        Ok(_) if !force => return Ok(Outcome::Kept),
        Ok(_) => Outcome::Rewrote,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Wrote,
        Err(e) => return Err(Error::failed(format!("{}: {e}", path.display()))),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::failed(format!("{}: {e}", parent.display())))?;
    }
    std::fs::write(&path, text).map_err(|e| Error::failed(format!("{}: {e}", path.display())))?;
    Ok(outcome)
}

/// `key = value` with its comment; [`align`] places the comment.
fn keyed(line: &str, comment: &str) -> String {
    format!("{line}  # {comment}")
}

/// Aligns the comments of `key = value  # comment` lines, per table: column 32, or 46 when a
/// value of the table is longer; a value longer still keeps two spaces before its comment.
fn align(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    let mut block: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.starts_with('[') {
            align_block(&block, &mut out);
            block.clear();
        }
        block.push(line);
    }
    align_block(&block, &mut out);
    out
}

fn align_block(lines: &[&str], out: &mut String) {
    let code = |line: &str| match line.split_once("  # ") {
        Some((code, comment)) if !line.starts_with('#') => Some((code.trim_end().to_string(), comment.to_string())),
        _ => None,
    };
    let widest = lines
        .iter()
        .filter_map(|l| code(l))
        .map(|(c, _)| c.len())
        .filter(|&n| n + 2 <= 46)
        .max()
        .unwrap_or(0);
    let col = if widest + 2 <= 32 { 32 } else { 46 };
    for line in lines {
        match code(line) {
            Some((c, comment)) => {
                let col = col.max(c.len() + 2);
                out.push_str(&format!("{c:<col$}# {comment}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
}

/// The generated `tj-deploy.toml`.
pub fn render_config(p: &Project) -> String {
    let install = match p.lockfile {
        Some(f) => keyed(
            &format!("install = {:?}", p.manager.install(true)),
            &format!("from {f}"),
        ),
        None => keyed(
            &format!("install = {:?}", p.manager.install(false)),
            "no lockfile found: commit one, then use `npm ci --omit=dev`",
        ),
    };
    let (migrate, backup) = if p.prisma {
        (
            keyed(
                "migrate = \"npx prisma migrate deploy\"",
                "prisma/schema.prisma found; runs once per deploy, after the backup",
            ),
            keyed(
                "database_backup = true",
                "pg_dump of DATABASE_URL (from shared/.env) before each deploy",
            ),
        )
    } else {
        (
            keyed(
                "migrate = \"\"",
                "no prisma/schema.prisma: FILL IN your migration command, if any",
            ),
            keyed(
                "database_backup = false",
                "true: pg_dump of DATABASE_URL (from shared/.env) before each deploy",
            ),
        )
    };
    let eco = p.ecosystem.unwrap_or("ecosystem.config.js");
    let reload = keyed(
        &format!("reload = \"pm2 startOrReload {eco} --update-env\""),
        "run in <deploy_dir>/current",
    );
    let branch = |b: &Branch, env: &str| {
        let note = if b.found {
            format!("pushes to {} deploy to {env}", b.name)
        } else {
            format!("FILL IN: no {} branch in git yet; pushes to it deploy to {env}", b.name)
        };
        keyed(&format!("branch = {:?}", b.name), &note)
    };
    let text = include_str!("tj-deploy.toml.tmpl")
        .replace("{{app_source}}", &p.app_source)
        .replace("{{app}}", &p.app)
        .replace("{{install}}", &install)
        .replace("{{migrate}}", &migrate)
        .replace("{{reload}}", &reload)
        .replace("{{database_backup}}", &backup)
        .replace("{{staging_branch}}", &branch(&p.staging_branch, "staging"))
        .replace("{{production_branch}}", &branch(&p.production_branch, "production"));
    align(&text)
}

/// The four example workflows with the branches found and the build step's install for the
/// package manager found.
pub fn workflows(p: &Project) -> Vec<(String, String)> {
    let (prod, staging) = (&p.production_branch.name, &p.staging_branch.name);
    let install = format!("          {}\n", p.manager.ci_install());
    let files = [
        (
            "deploy-staging.yml",
            include_str!("../../examples/workflows/deploy-staging.yml"),
        ),
        (
            "deploy-production.yml",
            include_str!("../../examples/workflows/deploy-production.yml"),
        ),
        ("rollback.yml", include_str!("../../examples/workflows/rollback.yml")),
        ("pr-check.yml", include_str!("../../examples/workflows/pr-check.yml")),
    ];
    files
        .into_iter()
        .map(|(name, text)| {
            let text = text
                .replace("`develop`", &format!("`{staging}`"))
                .replace("branches: [develop]", &format!("branches: [{staging}]"))
                .replace("`main`", &format!("`{prod}`"))
                .replace("branches: [main]", &format!("branches: [{prod}]"))
                .replace("branches: [main, develop]", &format!("branches: [{prod}, {staging}]"))
                .replace("github.base_ref == 'main'", &format!("github.base_ref == '{prod}'"))
                .replace(
                    "base_ref == 'refs/heads/main'",
                    &format!("base_ref == 'refs/heads/{prod}'"),
                )
                .replace("          npm ci\n", &install);
            (format!(".github/workflows/{name}"), text)
        })
        .collect()
}

/// The closing list: secrets, environments, the first check.
fn what_is_left(p: &Project) -> String {
    format!(
        "What is left to you:
  1. tj-deploy.toml: fill in every line marked FILL IN (hosts, deploy_dir, backup_dir, health_url).
  2. GitHub → Settings → Environments: create `staging` and `production` (give production
     required reviewers, so its deploys and rollbacks wait for an approval).
  3. Secrets (repository or per environment), e.g. with `gh secret set NAME [--env ENV]`:
       SSH_KEY            ssh-keygen -t ed25519 -N '' -C 'tj-deploy {app}' -f tj-deploy-key
                          (the secret is tj-deploy-key; append tj-deploy-key.pub to the deploy
                          user's ~/.ssh/authorized_keys on every host)
       KNOWN_HOSTS        ssh-keyscan -p PORT HOST   (for every host in `hosts`; the secret is the output)
       SLACK_WEBHOOK_URL  optional: an incoming-webhook URL of your Slack app
  4. Check the first server: tj-deploy setup -e staging --check
",
        app = p.app,
    )
}

#[cfg(test)]
mod tests;
