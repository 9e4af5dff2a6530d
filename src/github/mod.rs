//! GitHub: the client ([`client`]), pre-flight gates ([`gates`]), and what a run reports back
//! ([`report`]: deployments and the check run). Everything here is skipped, with one line
//! saying so, when there is no token.

pub mod client;
pub mod gates;
pub mod pr;
pub mod report;

use crate::config::Invocation;
use crate::error::{Error, Result};
use crate::ui;
pub use client::Github;

/// The client for this run, or `None` (said once) when there is no token.
pub fn connect(inv: &Invocation) -> Result<Option<Github>> {
    let Some(token) = &inv.github_token else {
        ui::info("GitHub reporting and gates are off: no github-token / GITHUB_TOKEN");
        return Ok(None);
    };
    let repo = inv
        .github
        .repository
        .as_deref()
        .ok_or_else(|| Error::invalid("GITHUB_REPOSITORY: not set (owner/repo), but a GitHub token was given"))?;
    let valid = repo.split_once('/').is_some_and(|(o, r)| {
        let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        ok(o) && ok(r)
    });
    if !valid {
        return Err(Error::invalid(format!("GITHUB_REPOSITORY: {repo:?} is not owner/repo")));
    }
    let api = inv.github.api_url.as_deref().unwrap_or("https://api.github.com");
    let gh = Github::new(token.expose(), api, repo)?;
    Ok(Some(match inv.github.backoff_ms {
        Some(ms) => gh.with_backoff(std::time::Duration::from_millis(ms)),
        None => gh,
    }))
}

/// Said when the token may not create check runs.
pub const FORBIDDEN_CHECK: &str = "GitHub refused to create the check run (403: the token cannot write checks, as on fork pull requests); the job summary has the report";

/// The name of our check run for an environment.
pub fn check_name(env: &str) -> String {
    format!("tj-deploy / {env}")
}

/// GitHub's side of one run: the check run, the deployment and the gates. A failure to report
/// is a warning, never a changed result; only the gates can stop a run.
pub struct Reporter {
    gh: Option<Github>,
    marker: String,
    check: Option<u64>,
    deployment: Option<u64>,
    /// GitHub answered 403 to creating the check run (a fork PR's read-only token).
    pub check_forbidden: bool,
}

impl Reporter {
    pub fn new(inv: &Invocation) -> Result<Self> {
        let marker = format!(
            "{}-{}",
            inv.github
                .run_id
                .clone()
                .unwrap_or_else(|| std::process::id().to_string()),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        Ok(Reporter {
            gh: connect(inv)?,
            marker,
            check: None,
            deployment: None,
            check_forbidden: false,
        })
    }

    pub fn client(&self) -> Option<&Github> {
        self.gh.as_ref()
    }

    /// The check run this run created, if any (the watch updates its progress line).
    pub fn check_id(&self) -> Option<u64> {
        self.check
    }

    /// Creates our check run `in_progress`.
    pub async fn start_check(&mut self, inv: &Invocation, sha: &crate::config::Sha, env: &str) {
        let Some(gh) = &self.gh else { return };
        let url = inv.github.run_url();
        match report::start_check(gh, sha, &check_name(env), &self.marker, url.as_deref()).await {
            Ok(Some(id)) => self.check = Some(id),
            Ok(None) => {
                self.check_forbidden = true;
                ui::warn(FORBIDDEN_CHECK);
            }
            Err(e) => ui::warn(&format!("could not create the check run: {e}")),
        }
    }

    /// Runs the gates; `Err(Refused)` names the first that failed. No token: no gates (said once).
    pub async fn gates(&self, wanted: &gates::Wanted<'_>) -> (Vec<gates::Gate>, Result<()>) {
        let Some(gh) = &self.gh else {
            return (Vec::new(), Ok(()));
        };
        let list = gates::run(gh, wanted).await;
        if crate::signals::Cancel::installed().is_some_and(|c| c.is_cancelled()) {
            // Cut short by a signal, like any run: exit 1, not a refusal by a gate.
            return (
                list,
                Err(Error::failed(
                    "cancelled by signal while the gates ran; nothing was changed",
                )),
            );
        }
        let verdict = match list.iter().find(|g| !g.ok) {
            Some(g) => Err(Error::refused(format!(
                "gate {}: {}; nothing was changed",
                g.name, g.reason
            ))),
            None => Ok(()),
        };
        (list, verdict)
    }

    /// Creates the deployment and marks it `in_progress`.
    pub async fn start_deployment(&mut self, inv: &Invocation, d: &report::DeploymentRequest<'_>) {
        let Some(gh) = &self.gh else { return };
        let d = report::DeploymentRequest {
            marker: &self.marker,
            ..*d
        };
        match report::create_deployment(gh, &d).await {
            Ok(id) => {
                self.deployment = Some(id);
                let log = inv.github.run_url();
                if let Err(e) =
                    report::deployment_status(gh, id, "in_progress", d.description, None, log.as_deref()).await
                {
                    ui::warn(&format!("could not mark the GitHub deployment in progress: {e}"));
                }
            }
            Err(e) => ui::warn(&format!("could not create the GitHub deployment: {e}")),
        }
    }

    /// Final deployment status and check run conclusion from the run's summary.
    pub async fn finish(&self, inv: &Invocation, summary: &crate::report::Summary) {
        let Some(gh) = &self.gh else { return };
        use crate::report::Status;
        let ok = summary.status == Status::Success;
        if let Some(id) = self.deployment {
            let state = if ok { "success" } else { "failure" };
            let log = inv.github.run_url();
            if let Err(e) = report::deployment_status(
                gh,
                id,
                state,
                &summary.message,
                summary.environment_url.as_deref(),
                log.as_deref(),
            )
            .await
            {
                ui::warn(&format!("could not set the GitHub deployment status: {e}"));
            }
        }
        if let Some(id) = self.check {
            let review = summary.migration_review.as_ref();
            let flagged = review.is_some_and(|r| !r.flags.is_empty());
            // A PR check with flagged statements is neutral: the annotations carry the detail.
            let conclusion = match (ok, flagged && summary.command == "check") {
                (true, true) => "neutral",
                (true, false) => "success",
                (false, _) => "failure",
            };
            let annotations: Vec<serde_json::Value> = review
                .map(|r| r.flags.iter().map(report::annotation).collect())
                .unwrap_or_default();
            let title = format!(
                "{} {}: {}",
                summary.command,
                summary.status.as_str(),
                summary.environment
            );
            let md = summary.to_markdown();
            if let Err(e) = report::finish_check(gh, id, conclusion, &title, &md, &annotations).await {
                ui::warn(&format!("could not complete the check run: {e}"));
            }
        }
    }
}
