//! `tj-deploy backups`: the last backups of every host (id, kind, commit, release and its
//! state, size, whether it holds the database dump), as a table, JSON and in the job summary.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::app;
use crate::backup::{self, Manifest};
use crate::config::{Config, Invocation, ReleaseId};
use crate::error::{Error, Result};
use crate::remote::Transport;
use crate::remote::layout::Layout;
use crate::state::{self, HostState};
use crate::ui;

/// How many backups `backups` shows.
pub const LISTED: usize = 10;

/// One line of the `backups` listing: one backup id (one deploy or rollback), on every host
/// that holds it.
#[derive(Debug, Clone, Serialize)]
pub struct BackupEntry {
    /// The first host holding it; `hosts` lists them all.
    pub host: String,
    pub hosts: Vec<String>,
    /// The host holding this backup's database dump (the database host), if any.
    pub database_on: Option<String>,
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
                hosts: vec![host.to_string()],
                database_on: m.file("db.dump").is_some().then(|| host.to_string()),
                id: id.to_string(),
                kind: m.kind.clone(),
                created_at: m.created_at.clone(),
                commit: m.commit.clone(),
                release: m.release.clone(),
                release_on_disk: info.is_some_and(|i| i.revision.is_some()),
                // The ledger keeps a pruned release's mark.
                release_bad: rel.is_some_and(|r| state.is_bad(r)),
                current: rel.is_some() && rel == state.current,
                size_bytes: m.size(),
                database: m.file("db.dump").is_some(),
            }
        })
        .collect()
}

/// One entry per backup id across hosts, newest first, at most [`LISTED`]: a fleet's deploy is
/// one backup with its app part on every host and its one database dump on the database host.
fn merge(all: Vec<BackupEntry>) -> Vec<BackupEntry> {
    let mut by_id: BTreeMap<String, BackupEntry> = BTreeMap::new();
    for e in all {
        match by_id.get_mut(&e.id) {
            Some(m) => {
                m.hosts.extend(e.hosts);
                m.database_on = m.database_on.take().or(e.database_on);
                m.database |= e.database;
                m.release_bad |= e.release_bad;
                m.release_on_disk &= e.release_on_disk;
            }
            None => {
                by_id.insert(e.id.clone(), e);
            }
        }
    }
    by_id.into_values().rev().take(LISTED).collect()
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
                    .map(|c| crate::ui::prefix(c, 7).to_string())
                    .unwrap_or_else(|| "—".into()),
                e.release.clone().unwrap_or_else(|| "—".into()),
                release_state(e).to_string(),
                human_size(e.size_bytes),
                match &e.database_on {
                    Some(h) if e.hosts.len() > 1 => format!("on {h}"),
                    Some(_) => "yes".into(),
                    None => "no".into(),
                },
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
pub async fn command(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<()> {
    let l = layout(config);
    let fleet = app::connect(config, inv, vars).await?;
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
    let all = merge(all);
    if inv.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&all).map_err(|e| Error::failed(e.to_string()))?
        );
    } else if all.is_empty() {
        println!("No backups in {} yet.", config.env.backup_dir);
    } else {
        // Manifests are the hosts' words: fenced like any host output in Actions.
        ui::print_foreign(render(&all, false).trim_end());
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

pub(crate) fn layout(config: &Config) -> Layout {
    Layout::new(config.env.deploy_dir.clone(), config.env.backup_dir.clone())
}
