//! `tj-deploy history` and `tj-deploy stats`: the runs recorded in every host's
//! deployments.log, deduplicated by id ([`crate::history`]), listed or turned into the DORA
//! figures, as text, `--json`, and (stats) a table in the job summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::config::{Config, HostSpec, Invocation};
use crate::error::{Error, Result};
use crate::history::{self, Run, Spread, Stats};
use crate::remote::layout::Layout;
use crate::remote::{Mode, Transport, commands};
use crate::ui;

/// Every reachable host's log, parsed and deduplicated, oldest first, and the hosts whose log
/// could not be read, with why (warned about here; the command ends with exit 1 after showing
/// what it has: the other hosts' logs usually hold the same runs). No host read at all is the
/// `command`'s error: there is nothing to show, and empty figures would mislead.
async fn runs(
    config: &Config,
    inv: &Invocation,
    vars: &BTreeMap<String, String>,
    command: &str,
) -> Result<(Vec<Run>, Vec<(HostSpec, String)>)> {
    let l = Layout::new(config.env.deploy_dir.clone(), config.env.backup_dir.clone());
    let (fleet, mut down) = super::connect_reachable(config, inv, vars).await?;
    let mut all = Vec::new();
    for (h, t) in &fleet.hosts {
        match t
            .run(&commands::read_log(&l), Mode::Capture)
            .await
            .and_then(|o| o.check("read deployments.log"))
        {
            Ok(out) => {
                let (runs, skipped) = history::parse(&h.to_string(), &out.stdout);
                if skipped > 0 {
                    ui::warn(&format!("{h}: {skipped} line(s) of {} are not runs; skipped", l.log()));
                }
                all.extend(runs);
            }
            Err(e) => down.push((h.clone(), super::without_host(h, &e.message).to_string())),
        }
    }
    fleet.close().await;
    if down.len() == config.env.hosts.len() {
        super::not_read(command, config.env.hosts.len(), &down)?;
    }
    for (h, e) in &down {
        ui::warn(&format!("{h}: not read, its runs are missing here: {e}"));
    }
    Ok((history::dedupe(all), down))
}

pub async fn history(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<()> {
    let limit = inv.ops.limit.unwrap_or(20);
    let (runs, down) = runs(config, inv, vars, "history").await?;
    let shown: Vec<&Run> = runs.iter().rev().take(limit).collect();
    if inv.json {
        let v = serde_json::json!({ "runs": shown, "hosts_not_read": hosts_not_read(&down) });
        let text = serde_json::to_string_pretty(&v).map_err(|e| Error::failed(format!("history: {e}")))?;
        println!("{text}");
        return super::not_read("history", config.env.hosts.len(), &down);
    }
    if shown.is_empty() {
        println!("{}: no deploys, rollbacks or restarts recorded yet", config.env.name);
        return super::not_read("history", config.env.hosts.len(), &down);
    }
    let mut out = format!(
        "{:<15}  {:<8}  {:<7}  {:<11}  {:>8}  {}\n",
        "ID", "KIND", "COMMIT", "STATUS", "DURATION", "ACTOR"
    );
    for r in shown {
        let commit = r.commit.as_deref().map(|c| ui::prefix(c, 7)).unwrap_or("-");
        let _ = writeln!(
            out,
            "{:<15}  {:<8}  {:<7}  {:<11}  {:>8}  {}",
            r.id,
            r.kind,
            commit,
            r.status,
            history::human(r.duration_secs() as f64),
            r.actor.as_deref().unwrap_or("-")
        );
    }
    // Actors and ids come from the hosts' logs: foreign text.
    ui::print_foreign(out.trim_end());
    super::not_read("history", config.env.hosts.len(), &down)
}

pub async fn stats(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<()> {
    let since = inv.ops.since.as_deref().unwrap_or("30d");
    let window = history::window("since", since).map_err(Error::invalid)?;
    let (runs, down) = runs(config, inv, vars, "stats").await?;
    let mut s = history::stats(&runs, window, chrono::Utc::now());
    match crate::github::connect(inv)? {
        None => {
            s.lead_time_note =
                Some("lead time for changes needs a GitHub token (commit times come from GitHub); skipped".into())
        }
        Some(gh) => match lead_times(&gh, &history::shipped(&runs, window, s.until)).await {
            Ok(spread) => s.lead_time = Some(spread),
            Err(e) => s.lead_time_note = Some(format!("lead time for changes not computed: {}", e.message)),
        },
    }
    let mut md = markdown(&config.env.name.to_string(), since, &s);
    for (h, e) in &down {
        let _ = write!(
            md,
            "\n\n> ⚠ {h} not read (`{}`): these figures come from the other hosts' logs.",
            e.replace('`', "'")
        );
    }
    if let Some(path) = inv.github.summary_file.as_deref()
        && let Err(e) = crate::actions::append(path, &(md.clone() + "\n"))
    {
        ui::warn(&format!("could not write the job summary: {e}"));
    }
    if inv.json {
        let mut v = serde_json::to_value(&s).map_err(|e| Error::failed(format!("stats: {e}")))?;
        v["hosts_not_read"] = serde_json::json!(hosts_not_read(&down));
        let text = serde_json::to_string_pretty(&v).map_err(|e| Error::failed(format!("stats: {e}")))?;
        println!("{text}");
    } else {
        println!("{md}");
    }
    super::not_read("stats", config.env.hosts.len(), &down)
}

/// The hosts whose log is missing from the output, as `--json` names them.
fn hosts_not_read(down: &[(HostSpec, String)]) -> Vec<String> {
    down.iter().map(|(h, _)| h.to_string()).collect()
}

/// At most this many deploys are asked about (one GitHub request each).
const LEAD_TIME_DEPLOYS: usize = 100;

fn commit_time(c: &serde_json::Value) -> Option<chrono::DateTime<chrono::Utc>> {
    let t = c["commit"]["committer"]["date"]
        .as_str()
        .or(c["commit"]["author"]["date"].as_str())?;
    Some(
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()?
            .with_timezone(&chrono::Utc),
    )
}

/// Each shipped commit's time from GitHub: the commits after the previous deploy's (compare),
/// or the deployed commit alone when there was none.
async fn lead_times(
    gh: &crate::github::Github,
    deploys: &[(Option<String>, String, chrono::DateTime<chrono::Utc>)],
) -> Result<Spread> {
    let mut times = Vec::new();
    // Commits come from the hosts' logs and go into a URL path: hex only.
    let sha = |c: &str| c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = deploys
        .iter()
        .filter(|(b, h, _)| sha(h) && b.as_deref().is_none_or(sha));
    for (base, head, done) in valid.rev().take(LEAD_TIME_DEPLOYS) {
        let commits = match base {
            Some(b) => gh.get(&gh.repo_path(&format!("/compare/{b}...{head}"))).await?["commits"]
                .as_array()
                .map(|a| a.iter().filter_map(commit_time).collect())
                .unwrap_or_default(),
            None => commit_time(&gh.get(&gh.repo_path(&format!("/commits/{head}"))).await?)
                .into_iter()
                .collect(),
        };
        times.push((*done, commits));
    }
    Ok(history::lead_time(&times))
}

fn spread_cells(s: &Spread) -> (String, String) {
    match (s.median_seconds, s.p90_seconds) {
        (Some(m), Some(p)) => (history::human(m), history::human(p as f64)),
        _ => ("-".into(), "-".into()),
    }
}

/// The figures as a markdown table (terminal and job summary alike).
pub fn markdown(env: &str, since: &str, s: &Stats) -> String {
    let mut out = format!(
        "### Deployment stats: {env}, last {since}\n\n| Measure | Value | From | Median | p90 |\n|---|---|---|---|---|\n"
    );
    let _ = writeln!(
        out,
        "| Deployment frequency | {:.2}/day ({:.1}/week) | {} deploys in {:.0} days | | |",
        s.deploys_per_day, s.deploys_per_week, s.deploys, s.days
    );
    let cfr = s
        .change_failure_rate
        .map_or("-".to_string(), |r| format!("{:.1} %", r * 100.0));
    let failures = s.failed_deploys + s.rolled_back_deploys + s.undone_by_rollback;
    let _ = writeln!(
        out,
        "| Change failure rate | {cfr} | {failures} of {} deploys ({} failed, {} rolled back, {} undone by a rollback) | | |",
        s.deploys, s.failed_deploys, s.rolled_back_deploys, s.undone_by_rollback
    );
    let (m, p) = spread_cells(&s.time_to_restore);
    let _ = writeln!(
        out,
        "| Time to restore | {m} | {} restores, {} not restored yet | {m} | {p} |",
        s.time_to_restore.count, s.unrestored
    );
    let (m, p) = spread_cells(&s.deploy_duration);
    let _ = writeln!(
        out,
        "| Deploy duration | {m} | {} deploys | {m} | {p} |",
        s.deploy_duration.count
    );
    if let Some(l) = &s.lead_time {
        let (m, p) = spread_cells(l);
        let _ = writeln!(
            out,
            "| Lead time for changes | {m} | {} commits shipped | {m} | {p} |",
            l.count
        );
    }
    let _ = writeln!(out, "| Rollbacks / restarts | {} / {} | | | |", s.rollbacks, s.restarts);
    if let Some(note) = &s.lead_time_note {
        let _ = write!(out, "\n{note}\n");
    }
    out
}
