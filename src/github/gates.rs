//! Pre-flight gates, each reported pass/fail with its reason: the right branch, the commit is
//! the branch head, the required checks are green (waiting for pending ones), and for
//! production the same commit already deployed to staging. Any error talking to GitHub fails
//! the gate: we never deploy unchecked.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::client::Github;
use crate::config::{EnvConfig, Sha};
use crate::error::Result;
use crate::ui;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Gate {
    pub name: String,
    pub ok: bool,
    pub reason: String,
}

fn gate(name: &str, ok: bool, reason: impl Into<String>) -> Gate {
    Gate {
        name: name.to_string(),
        ok,
        reason: reason.into(),
    }
}

/// Which gates a run needs.
pub struct Wanted<'a> {
    pub env: &'a EnvConfig,
    pub sha: &'a Sha,
    /// `GITHUB_REF`, e.g. `refs/heads/develop`.
    pub git_ref: Option<&'a str>,
    /// Our own check run's name, which must not count as a required check.
    pub own_check: &'a str,
    /// Branch, head and staging gates apply to deploys, not to pull-request checks.
    pub deploy: bool,
    /// In a PR check: the branch gate asks whether the PR targets the environment's branch.
    pub pull_request: Option<&'a crate::config::PullRequest>,
}

/// Runs the gates in order and stops at the first that fails.
pub async fn run(gh: &Github, w: &Wanted<'_>) -> Vec<Gate> {
    let mut gates = Vec::new();
    if w.deploy
        && let Some(branch) = &w.env.branch
    {
        let expected = format!("refs/heads/{branch}");
        let g = match w.git_ref {
            Some(r) if r == expected => gate("branch", true, format!("{r} is {branch}")),
            Some(r) => gate(
                "branch",
                false,
                format!("{r} is not {expected}: {} deploys from {branch}", w.env.name),
            ),
            None => gate(
                "branch",
                true,
                format!("no GITHUB_REF; the head check below ties the commit to {branch}"),
            ),
        };
        if !push(&mut gates, g) {
            return gates;
        }
        let g = head(gh, branch, w.sha)
            .await
            .unwrap_or_else(|e| gate("branch head", false, e.message));
        if !push(&mut gates, g) {
            return gates;
        }
    }
    if let Some(g) = pr_branch(w)
        && !push(&mut gates, g)
    {
        return gates;
    }
    if !w.env.required_checks.is_empty() {
        // Waiting for pending checks may take minutes: a signal must end it at once.
        let waited = match crate::signals::Cancel::installed() {
            Some(cancel) => cancel.guard("required checks", checks(gh, w)).await,
            None => checks(gh, w).await,
        };
        let g = waited.unwrap_or_else(|e| gate("required checks", false, e.message));
        if !push(&mut gates, g) {
            return gates;
        }
    }
    if !w.deploy && w.pull_request.is_some() && w.env.require_staging {
        // Information, not a failure: the PR's commit cannot have been on staging yet.
        push(
            &mut gates,
            gate(
                "staging first",
                true,
                format!(
                    "information: deploying to {} will require the merged commit to be deployed to staging first",
                    w.env.name
                ),
            ),
        );
    }
    if w.deploy && w.env.require_staging {
        let g = staging(gh, w.sha)
            .await
            .unwrap_or_else(|e| gate("staging first", false, e.message));
        push(&mut gates, g);
    }
    gates
}

/// In a PR check: does the pull request target the environment's branch?
fn pr_branch(w: &Wanted<'_>) -> Option<Gate> {
    let (pr, branch) = (w.pull_request?, w.env.branch.as_ref()?);
    if w.deploy {
        return None;
    }
    Some(if pr.base_ref == *branch {
        gate("branch", true, format!("{} targets {branch}", pr.describe()))
    } else {
        gate(
            "branch",
            false,
            format!(
                "{} targets {}, not {branch}: {} deploys from {branch}",
                pr.describe(),
                pr.base_ref,
                w.env.name
            ),
        )
    })
}

fn push(gates: &mut Vec<Gate>, g: Gate) -> bool {
    if g.ok {
        ui::info(&format!("✓ gate {}: {}", g.name, g.reason));
    } else {
        ui::info(&format!("✗ gate {}: {}", g.name, g.reason));
    }
    let ok = g.ok;
    gates.push(g);
    ok
}

async fn head(gh: &Github, branch: &str, sha: &Sha) -> Result<Gate> {
    let b = gh.get(&gh.repo_path(&format!("/branches/{branch}"))).await?;
    let head = b["commit"]["sha"].as_str().unwrap_or_default().to_string();
    if head.eq_ignore_ascii_case(sha.as_str()) {
        return Ok(gate(
            "branch head",
            true,
            format!("{} is the head of {branch}", sha.short()),
        ));
    }
    let c = gh
        .get(&gh.repo_path(&format!("/compare/{}...{}", sha.as_str(), head)))
        .await?;
    let behind = c["ahead_by"].as_u64().unwrap_or(0);
    let why = match c["status"].as_str() {
        Some("ahead") => format!(
            "{} is {behind} commit(s) behind the head of {branch} ({}); deploy the head",
            sha.short(),
            crate::ui::prefix(&head, 7)
        ),
        _ => format!(
            "{} is not the head of {branch} ({}); it is not up to date with the remote",
            sha.short(),
            crate::ui::prefix(&head, 7)
        ),
    };
    Ok(gate("branch head", false, why))
}

/// The state of one required check: done well, done badly, or not yet.
enum CheckState {
    Passed(String),
    Failed(String),
    Pending(String),
}

fn check_state(name: &str, runs: &Value, statuses: &Value, own: &str) -> CheckState {
    let latest_run = runs["check_runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"].as_str() == Some(name) && r["name"].as_str() != Some(own))
        .max_by_key(|r| r["id"].as_u64().unwrap_or(0));
    if let Some(r) = latest_run {
        return match (r["status"].as_str(), r["conclusion"].as_str()) {
            (Some("completed"), Some(c @ ("success" | "neutral" | "skipped"))) => {
                CheckState::Passed(format!("{name}: {c}"))
            }
            (Some("completed"), c) => CheckState::Failed(format!("{name}: {}", c.unwrap_or("no conclusion"))),
            (s, _) => CheckState::Pending(format!("{name}: {}", s.unwrap_or("unknown"))),
        };
    }
    let status = statuses["statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["context"].as_str() == Some(name));
    match status.and_then(|s| s["state"].as_str()) {
        Some("success") => CheckState::Passed(format!("{name}: success")),
        Some(s @ ("failure" | "error")) => CheckState::Failed(format!("{name}: {s}")),
        Some(s) => CheckState::Pending(format!("{name}: {s}")),
        None => CheckState::Pending(format!("{name}: not reported")),
    }
}

/// Every check run of `sha`, all pages (a commit in a big workflow has more than 100), as one
/// `{"check_runs": [...]}` value.
pub(crate) async fn check_runs(gh: &Github, sha: &Sha) -> Result<Value> {
    const PER_PAGE: usize = 100;
    // GitHub caps a commit's check runs at 1000 per app; stop there whatever the counts say.
    const MAX_PAGES: usize = 10;
    let mut all = Vec::new();
    for page in 1..=MAX_PAGES {
        let v = gh
            .get(&gh.repo_path(&format!(
                "/commits/{}/check-runs?per_page={PER_PAGE}&page={page}",
                sha.as_str()
            )))
            .await?;
        let runs = v["check_runs"].as_array().cloned().unwrap_or_default();
        let got = runs.len();
        all.extend(runs);
        let total = v["total_count"].as_u64().unwrap_or(0) as usize;
        if got < PER_PAGE || all.len() >= total {
            break;
        }
    }
    Ok(serde_json::json!({ "check_runs": all }))
}

async fn checks(gh: &Github, w: &Wanted<'_>) -> Result<Gate> {
    let deadline = Instant::now() + w.env.checks_timeout;
    let mut announced = false;
    loop {
        let runs = check_runs(gh, w.sha).await?;
        let statuses = gh
            .get(&gh.repo_path(&format!("/commits/{}/status?per_page=100", w.sha.as_str())))
            .await?;
        let (mut passed, mut failed, mut pending) = (Vec::new(), Vec::new(), Vec::new());
        for name in &w.env.required_checks {
            match check_state(name, &runs, &statuses, w.own_check) {
                CheckState::Passed(s) => passed.push(s),
                CheckState::Failed(s) => failed.push(s),
                CheckState::Pending(s) => pending.push(s),
            }
        }
        if !failed.is_empty() {
            return Ok(gate("required checks", false, format!("failed: {}", failed.join(", "))));
        }
        if pending.is_empty() {
            return Ok(gate("required checks", true, passed.join(", ")));
        }
        if Instant::now() + w.env.checks_interval > deadline {
            return Ok(gate(
                "required checks",
                false,
                format!(
                    "still pending after {}: {}",
                    ui::format_duration(w.env.checks_timeout),
                    pending.join(", ")
                ),
            ));
        }
        if !announced {
            ui::info(&format!(
                "… waiting up to {} for {}",
                ui::format_duration(w.env.checks_timeout),
                pending.join(", ")
            ));
            announced = true;
        }
        tokio::time::sleep(w.env.checks_interval.min(Duration::from_secs(60))).await;
    }
}

async fn staging(gh: &Github, sha: &Sha) -> Result<Gate> {
    let list = gh
        .get(&gh.repo_path(&format!(
            "/deployments?sha={}&environment=staging&per_page=30",
            sha.as_str()
        )))
        .await?;
    let mut seen = None;
    for d in list.as_array().into_iter().flatten() {
        let Some(id) = d["id"].as_u64() else { continue };
        // Any success in the history counts: a newer staging deployment turns this one's
        // latest status `inactive` (auto_inactive) without undoing that it succeeded.
        let statuses = gh
            .get(&gh.repo_path(&format!("/deployments/{id}/statuses?per_page=100")))
            .await?;
        let history: Vec<&str> = statuses
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["state"].as_str())
            .collect();
        if history.contains(&"success") {
            return Ok(gate(
                "staging first",
                true,
                format!("{} deployed to staging (deployment {id})", sha.short()),
            ));
        }
        let state = history.first().copied().unwrap_or("no status");
        seen.get_or_insert(state.to_string());
    }
    if let Some(state) = seen {
        return Ok(gate(
            "staging first",
            false,
            format!("no staging deployment of {} succeeded (latest: {state})", sha.short()),
        ));
    }
    Ok(gate(
        "staging first",
        false,
        format!(
            "{} has not been deployed to staging; deploy it there first",
            sha.short()
        ),
    ))
}
