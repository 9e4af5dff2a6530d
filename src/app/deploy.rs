//! `tj-deploy deploy`: the gates, the package, the GitHub deployment, then the deploy pipeline
//! on the connected hosts, and the report. A dry run prints the plan the pipeline would run.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::app::{self, build_package, preflight, refused_summary, resolve_sha};
use crate::config::{Config, Invocation, ReleaseId, Sha};
use crate::error::{Error, Kind, Result};
use crate::github::Reporter;
use crate::github::gates::Gate;
use crate::package::Package;
use crate::pipeline::{self, Ctx, deploy::Deploy};
use crate::plan::Plan;
use crate::remote::layout::Layout;
use crate::report::{Status, StepRecord};
use crate::signals::Cancel;
use crate::steps::Steps;

/// When the run started, for the summary and the release id.
#[derive(Clone, Copy)]
struct Start {
    at: Instant,
    utc: chrono::DateTime<chrono::Utc>,
}

pub async fn command(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<()> {
    let sha = resolve_sha(config, inv)?;
    let plan = Plan::deploy(config, Some(&sha));
    if inv.dry_run {
        println!(
            "Dry run: deploy {} ({}) to {} — nothing will be changed.",
            config.app,
            sha.short(),
            config.env.name
        );
        print!("{}", plan.render());
        if let Some(w) = crate::watch::effective(&config.env, inv) {
            println!("{}", crate::watch::plan_line(&w));
        }
        return Ok(());
    }
    let cancel = Cancel::install();
    let start = Start {
        at: Instant::now(),
        utc: chrono::Utc::now(),
    };
    let (mut github, gates, verdict) = preflight(config, inv, &sha, true).await?;
    if let Err(e) = verdict {
        return Err(early(config, inv, &sha, start, e, gates, &github).await);
    }
    announce(config, inv, &sha).await?;
    let work = tempfile::Builder::new()
        .prefix("tj-deploy-")
        .tempdir()
        .map_err(|e| Error::failed(format!("temp dir: {e}")))?;
    let (pkg, package_step) = match build_package(config, &sha, work.path(), &cancel).await {
        Ok(p) => p,
        Err(e) => return Err(early(config, inv, &sha, start, e, gates, &github).await),
    };
    let planned = ReleaseId::from_time(start.utc).to_string();
    let request = crate::github::report::DeploymentRequest {
        sha: &sha,
        environment: config.env.name.as_str(),
        production: config.env.name.as_str() == "production",
        marker: "",
        release: Some(&planned),
        description: &format!("tj-deploy {} to {}", sha.short(), config.env.name),
    };
    github.start_deployment(inv, &request).await;
    let fleet = match app::connect(config, inv, vars).await {
        Ok(f) => f,
        Err(e) => return Err(early(config, inv, &sha, start, e, gates, &github).await),
    };
    let shipped = Shipped {
        sha: &sha,
        package: &pkg,
        package_step,
        plan: &plan,
        gates,
    };
    let outcome = run(config, inv, &cancel, start, shipped, &fleet, &github).await;
    fleet.close().await;
    let (summary, error) = outcome?;
    app::publish(&summary, inv, &github).await;
    error.map_or(Ok(()), Err)
}

/// What the deploy ships: the commit, its package, the plan and the gates it passed.
struct Shipped<'a> {
    sha: &'a Sha,
    package: &'a Package,
    package_step: StepRecord,
    plan: &'a Plan,
    gates: Vec<Gate>,
}

/// The pipeline on the connected hosts.
async fn run(
    config: &Config,
    inv: &Invocation,
    cancel: &Cancel,
    start: Start,
    s: Shipped<'_>,
    fleet: &app::Fleet,
    github: &Reporter,
) -> Result<(crate::report::Summary, Option<Error>)> {
    let http = crate::health::client()?;
    let steps = Steps::new(cancel, vec![s.package_step]).with_timeouts(config.env.timeouts.clone());
    let ctx = Ctx {
        config,
        inv,
        layout: Layout::new(config.env.deploy_dir.clone(), config.env.backup_dir.clone()),
        steps: &steps,
        http: &http,
        owner: crate::lock::LockOwner::new(inv, "deploy", config.env.name.as_str(), Some(s.sha), start.utc),
    };
    let d = Deploy {
        sha: s.sha,
        package: s.package,
        plan: s.plan,
        started: start.at,
        started_at: start.utc,
        gates: s.gates,
        github: github.client(),
        check: github.check_id(),
    };
    Ok(pipeline::deploy::run(&ctx, d, fleet.borrowed()).await)
}

/// Slack's "deploy started" message, when asked for.
async fn announce(config: &Config, inv: &Invocation, sha: &Sha) -> Result<()> {
    if !inv.slack_on_start {
        return Ok(());
    }
    let Some(hook) = &inv.slack_webhook else { return Ok(()) };
    let payload = crate::notify::slack::start_payload(
        &config.app,
        config.env.name.as_str(),
        sha.as_str(),
        &inv.actor,
        inv.github.run_url().as_deref(),
    );
    crate::notify::slack::post(&crate::health::client()?, hook.expose(), &payload).await;
    Ok(())
}

/// Before any host is touched, a refusal or failure still closes the check run and the
/// deployment, and says so everywhere.
async fn early(
    config: &Config,
    inv: &Invocation,
    sha: &Sha,
    start: Start,
    e: Error,
    gates: Vec<Gate>,
    github: &Reporter,
) -> Error {
    let mut summary = refused_summary(config, inv, "deploy", sha, gates, &e, start.at, start.utc);
    if e.kind == Kind::Failed {
        summary.status = Status::Failure;
    }
    app::publish(&summary, inv, github).await;
    e
}
