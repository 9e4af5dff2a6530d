//! `tj-deploy deploy`: the gates, the package, the migration gate on the connected database
//! host, the GitHub deployment, then the deploy pipeline on the hosts, and the report. A dry
//! run prints the plan the pipeline would run.

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
    let work = tempfile::Builder::new()
        .prefix("tj-deploy-")
        .tempdir()
        .map_err(|e| Error::failed(format!("temp dir: {e}")))?;
    let (pkg, package_step) = match build_package(config, &sha, work.path(), &cancel).await {
        Ok(p) => p,
        Err(e) => return Err(early(config, inv, &sha, start, e, gates, &github).await),
    };
    let fleet = match app::connect(config, inv, vars).await {
        Ok(f) => f,
        Err(e) => return Err(early(config, inv, &sha, start, e, gates, &github).await),
    };
    // The migration gate before anything anyone sees (the lock, Slack, the GitHub deployment):
    // a refusal leaves only the check run and the summary, like the other gates.
    let reviewed = match migration_gate(config, inv, &fleet).await {
        Ok(r) if !r.review.refused => r,
        outcome => {
            fleet.close().await;
            return Err(match outcome {
                Ok(r) => refused_migrations(config, inv, &sha, start, r.review, gates, &github).await,
                Err(e) => early(config, inv, &sha, start, e, gates, &github).await,
            });
        }
    };
    if let Err(e) = announce(config, inv, &sha).await {
        fleet.close().await;
        return Err(e);
    }
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
    let shipped = Shipped {
        sha: &sha,
        package: &pkg,
        package_step,
        plan: &plan,
        gates,
        reviewed,
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
    reviewed: crate::migrations::Early,
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
        reviewed: Some(s.reviewed),
    };
    Ok(pipeline::deploy::run(&ctx, d, fleet.borrowed()).await)
}

/// The destructive-migrations gate on the database host, read-only, before the lock.
async fn migration_gate(config: &Config, inv: &Invocation, fleet: &app::Fleet) -> Result<crate::migrations::Early> {
    let db = config.env.database_host.min(fleet.hosts.len().saturating_sub(1));
    let (_, t) = fleet
        .hosts
        .get(db)
        .ok_or_else(|| Error::invalid("hosts: the environment has no host"))?;
    let layout = Layout::new(config.env.deploy_dir.clone(), config.env.backup_dir.clone());
    crate::migrations::early_gate(t, &layout, config, inv.allow_destructive_migrations).await
}

/// A refusal of the migration gate, reported as the other gates' refusals are, with the review.
async fn refused_migrations(
    config: &Config,
    inv: &Invocation,
    sha: &Sha,
    start: Start,
    review: crate::migrations::Review,
    gates: Vec<Gate>,
    github: &Reporter,
) -> Error {
    let e = review
        .verdict()
        .err()
        .unwrap_or_else(|| Error::refused(review.decision.clone()));
    let mut summary = refused_summary(config, inv, "deploy", sha, gates, &e, start.at, start.utc);
    summary.migration_review = Some(review);
    app::publish(&summary, inv, github).await;
    e
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
