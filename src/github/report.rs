//! What tj-deploy writes to GitHub: a deployment with its statuses (`in_progress` →
//! `success` / `failure`) and the check run `tj-deploy / <env>` (created `in_progress`,
//! completed with the run's summary). Every create carries a marker so a retried POST finds
//! the first attempt instead of making a second one.

use serde_json::{Value, json};

use super::client::Github;
use crate::config::Sha;
use crate::error::Result;

/// GitHub's limit on a check run's summary, in bytes.
pub const SUMMARY_LIMIT: usize = 65535;

/// Cuts `md` to GitHub's limit at a character boundary, pointing at the job summary.
pub fn fit_summary(md: &str) -> String {
    if md.len() <= SUMMARY_LIMIT {
        return md.to_string();
    }
    let note = "\n\n… cut to fit GitHub's 65535-byte limit; the whole summary is in the run's job summary.";
    let mut end = SUMMARY_LIMIT - note.len();
    while !md.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{note}", &md[..end])
}

pub struct DeploymentRequest<'a> {
    pub sha: &'a Sha,
    pub environment: &'a str,
    pub production: bool,
    pub marker: &'a str,
    pub release: Option<&'a str>,
    pub description: &'a str,
}

/// Creates the deployment; returns its id.
pub async fn create_deployment(gh: &Github, d: &DeploymentRequest<'_>) -> Result<u64> {
    let body = json!({
        "ref": d.sha.as_str(),
        "task": "deploy",
        "environment": d.environment,
        "auto_merge": false,
        "required_contexts": [],
        "production_environment": d.production,
        "description": d.description,
        "payload": {"tj_deploy": {"run": d.marker, "release": d.release}},
    });
    let path = gh.repo_path("/deployments");
    let list_path = gh.repo_path(&format!(
        "/deployments?sha={}&environment={}&per_page=30",
        d.sha.as_str(),
        d.environment
    ));
    let created = gh
        .create(&path, &body, || async {
            let list = gh.get(&list_path).await?;
            Ok(list
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["payload"]["tj_deploy"]["run"].as_str() == Some(d.marker))
                .cloned())
        })
        .await?;
    Ok(created["id"].as_u64().unwrap_or_default())
}

pub async fn deployment_status(
    gh: &Github,
    id: u64,
    state: &str,
    description: &str,
    environment_url: Option<&str>,
    log_url: Option<&str>,
) -> Result<()> {
    let mut body = json!({"state": state, "description": truncate(description, 140), "auto_inactive": true});
    if let Some(u) = environment_url {
        body["environment_url"] = Value::from(u);
    }
    if let Some(u) = log_url {
        body["log_url"] = Value::from(u);
    }
    let path = gh.repo_path(&format!("/deployments/{id}/statuses"));
    let want = body["description"].clone();
    gh.create(&path, &body, || async {
        let list = gh.get(&path).await?;
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["state"].as_str() == Some(state) && s["description"] == want)
            .cloned())
    })
    .await?;
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max - 1).collect::<String>() + "…"
    }
}

/// Creates the check run `in_progress`; `None` when the token may not write checks (fork PRs).
pub async fn start_check(
    gh: &Github,
    sha: &Sha,
    name: &str,
    marker: &str,
    details_url: Option<&str>,
) -> Result<Option<u64>> {
    let mut body = json!({
        "name": name,
        "head_sha": sha.as_str(),
        "status": "in_progress",
        "external_id": marker,
        "started_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "output": {"title": format!("{name}: running"), "summary": "tj-deploy is running; this check completes when it ends."},
    });
    if let Some(u) = details_url {
        body["details_url"] = Value::from(u);
    }
    let path = gh.repo_path("/check-runs");
    let created = gh
        .create_or_forbidden(&path, &body, || async {
            // Every page: a commit may carry more than 100 check runs.
            let list = super::gates::check_runs(gh, sha).await?;
            Ok(list["check_runs"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["external_id"].as_str() == Some(marker))
                .cloned())
        })
        .await?;
    Ok(created.and_then(|c| c["id"].as_u64()))
}

/// GitHub takes at most this many annotations per check-run request.
pub const ANNOTATIONS_PER_REQUEST: usize = 50;

/// A flagged migration statement as a check-run annotation on its line (shows in the PR diff).
pub fn annotation(f: &crate::migrations::Flag) -> Value {
    json!({
        "path": f.path,
        "start_line": f.line,
        "end_line": f.line,
        "annotation_level": "warning",
        "title": format!("Destructive migration: {}", f.what),
        "message": truncate(&format!("{} in {}: {}", f.what, f.migration, f.statement), 1000),
    })
}

/// Keeps the check run `in_progress` with a line of progress (the post-deploy watch).
pub async fn progress_check(gh: &Github, id: u64, title: &str, line: &str) -> Result<()> {
    let path = gh.repo_path(&format!("/check-runs/{id}"));
    let body = json!({
        "status": "in_progress",
        "output": {"title": truncate(title, 255), "summary": fit_summary(line)},
    });
    gh.patch(&path, &body).await.map(|_| ())
}

/// Completes the check run; annotations beyond the first 50 follow in further updates, which
/// GitHub appends.
pub async fn finish_check(
    gh: &Github,
    id: u64,
    conclusion: &str,
    title: &str,
    summary_md: &str,
    annotations: &[Value],
) -> Result<()> {
    let path = gh.repo_path(&format!("/check-runs/{id}"));
    let output = |chunk: &[Value]| {
        let mut o = json!({"title": truncate(title, 255), "summary": fit_summary(summary_md)});
        if !chunk.is_empty() {
            o["annotations"] = Value::from(chunk.to_vec());
        }
        o
    };
    let mut chunks = annotations.chunks(ANNOTATIONS_PER_REQUEST);
    let body = json!({
        "status": "completed",
        "conclusion": conclusion,
        "completed_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "output": output(chunks.next().unwrap_or(&[])),
    });
    gh.patch(&path, &body).await?;
    for chunk in chunks {
        gh.patch(&path, &json!({"output": output(chunk)})).await?;
    }
    Ok(())
}

/// Commits after `base` up to `head` (oldest first), at most `cap`, and how many there are.
pub async fn changes(gh: &Github, base: &str, head: &str, cap: usize) -> Result<(Vec<crate::report::Change>, usize)> {
    let c = gh.get(&gh.repo_path(&format!("/compare/{base}...{head}"))).await?;
    let total = c["total_commits"].as_u64().unwrap_or(0) as usize;
    let list: Vec<crate::report::Change> = c["commits"]
        .as_array()
        .into_iter()
        .flatten()
        .take(cap)
        .map(|x| crate::report::Change {
            sha: x["sha"].as_str().unwrap_or_default().to_string(),
            subject: x["commit"]["message"]
                .as_str()
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        })
        .collect();
    Ok((list, total.max(c["commits"].as_array().map_or(0, Vec::len))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_fit_in_bytes_not_chars() {
        let long = "ü".repeat(40_000); // 80 000 bytes
        let fit = fit_summary(&long);
        assert!(fit.len() <= SUMMARY_LIMIT, "{}", fit.len());
        assert!(fit.ends_with("job summary."));
        assert_eq!(fit_summary("short"), "short");
    }
}
