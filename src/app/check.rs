//! `tj-deploy check`: the PR status check. Gates that apply to a pull request, the package,
//! the migration review and the plan, posted as a check run; never connects to a host.

use std::time::Instant;

use crate::app::{self, build_package, preflight, refused_summary, resolve_sha};
use crate::config::{Config, Invocation};
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::remote::layout::Layout;
use crate::report::Summary;
use crate::signals::Cancel;

/// `tj-deploy check`: the gates that apply to a pull request, the package build and the plan,
/// posted as a check run. Connects to no host.
pub async fn command(config: &Config, inv: &Invocation) -> Result<()> {
    let sha = resolve_sha(config, inv)?;
    let cancel = Cancel::install();
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let (github, mut gates, mut verdict) = preflight(config, inv, &sha, false).await?;
    gates.insert(
        0,
        crate::github::gates::Gate {
            name: "config".into(),
            ok: true,
            reason: format!("{} is valid", inv.config_path.display()),
        },
    );
    let mut steps = Vec::new();
    if verdict.is_ok() {
        let work = tempfile::Builder::new()
            .prefix("tj-check-")
            .tempdir()
            .map_err(|e| Error::failed(format!("temp dir: {e}")))?;
        match build_package(config, &sha, work.path(), &cancel).await {
            Ok((_, step)) => {
                gates.push(crate::github::gates::Gate {
                    name: "package".into(),
                    ok: true,
                    reason: step.note.clone(),
                });
                steps.push(step);
            }
            Err(e) => {
                gates.push(crate::github::gates::Gate {
                    name: "package".into(),
                    ok: false,
                    reason: e.message.clone(),
                });
                verdict = Err(Error::refused(format!("gate package: {}", e.message)));
            }
        }
    }
    let mut warnings = Vec::new();
    gates.push(ecosystem_gate(config, &mut warnings));
    warnings.extend(crate::drain::fallback_warning(
        config.env.reload.as_deref(),
        config.env.drain,
    ));
    let plan = Plan::deploy(config, Some(&sha)).render();
    let mut summary = refused_summary(
        config,
        inv,
        "check",
        &sha,
        gates,
        verdict.as_ref().err().unwrap_or(&Error::refused("")),
        started,
        started_at,
    );
    summary.steps = steps;
    summary.warnings = warnings;
    summary.migration_review = crate::github::pr::review(config, inv, github.client(), &sha).await;
    match &verdict {
        Ok(()) => {
            summary.status = crate::report::Status::Success;
            summary.message = format!(
                "ready to deploy {} to {}; the plan:\n\n```\n{}\n```",
                sha.short(),
                config.env.name,
                plan.trim_end()
            );
        }
        Err(e) => summary.message = e.message.clone(),
    }
    check_notes(&mut summary, inv, &github);
    app::publish(&summary, inv, &github).await;
    verdict
}

/// What a PR check's summary says on top: the pull request, flagged migrations, a check run
/// GitHub would not take.
fn check_notes(summary: &mut Summary, inv: &Invocation, github: &crate::github::Reporter) {
    if let Some(pr) = &inv.pull_request {
        summary.branch = Some(pr.describe());
        summary.message = format!("Pull request {}: {}", pr.describe(), summary.message);
    }
    if let Some(r) = summary.migration_review.as_ref().filter(|r| !r.flags.is_empty()) {
        summary.message.push_str(&format!(
            "\n\n⚠️ {} destructive migration statement(s) flagged; see the migration review.",
            r.flags.len()
        ));
    }
    if github.check_forbidden {
        summary
            .message
            .push_str(&format!("\n\n⚠️ {}.", crate::github::FORBIDDEN_CHECK));
    }
}

/// The PM2 ecosystem lint in `check`: with this machine's `node` when there is one (the deploy
/// runs it again on each host); its findings are warnings, never a failed check.
fn ecosystem_gate(config: &Config, warnings: &mut Vec<String>) -> crate::github::gates::Gate {
    use crate::ecosystem::{Local, lint_local};
    let current = Layout::new(config.env.deploy_dir.clone(), config.env.backup_dir.clone()).current();
    let (ok, reason) = match lint_local(
        &config.package_dir,
        config.env.reload.as_deref(),
        &current,
        config.env.drain_timeout,
    ) {
        Local::NoFile => (
            true,
            "no ecosystem file in the reload command or the package".to_string(),
        ),
        Local::NoNode => (
            true,
            "not checked here: no node on this machine (the deploy checks it on each host)".to_string(),
        ),
        Local::Failed(why) => {
            warnings.push(why.clone());
            (true, format!("not checked: {why}"))
        }
        Local::Checked(w) if w.is_empty() => (true, "PM2 apps reload without downtime".to_string()),
        Local::Checked(w) => {
            let n = w.len();
            for x in &w {
                crate::ui::warn(x);
            }
            warnings.extend(w);
            (true, format!("{n} warning(s): see Warnings"))
        }
    };
    crate::github::gates::Gate {
        name: "ecosystem".into(),
        ok,
        reason,
    }
}
