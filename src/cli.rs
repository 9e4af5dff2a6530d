//! The command line (DESIGN.md §2) and the top of every run: parse, validate, connect,
//! dispatch, report, and turn the outcome into an exit code.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Flags, HostSpec, Invocation, Sha};
use crate::deploy;
use crate::error::{Error, Result};
use crate::package;
use crate::remote::layout::Layout;
use crate::remote::local::LocalTransport;
use crate::remote::ssh::SshContext;
use crate::remote::{AnyTransport, Transport};
use crate::report::{StepRecord, Summary};
use crate::signals::Cancel;
use crate::steps::Steps;
use crate::{actions, lock, ui};

#[derive(Parser, Debug)]
#[command(
    name = "tj-deploy",
    version,
    about = "Deploy the Trading Journal to Linux servers over SSH: gated, backed up, atomic, verified, rolled back on failure."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Package, back up, upload, switch, reload and verify; roll back on failure.
    Deploy(DeployArgs),
    /// Roll back to a backup (default: the latest good one); safety backup first.
    Rollback(RollbackArgs),
    /// List the last 10 backups with id, commit, release, kind and size.
    Backups(BackupsArgs),
    /// Gates and plan for a pull request, posted as a check run; touches no host.
    Check(CheckArgs),
    /// Remove a stale deploy lock, saying whose it was.
    Unlock(CommonArgs),
}

#[derive(Args, Debug, Default)]
pub struct CheckArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Commit to check (default: GITHUB_SHA, else `git rev-parse HEAD` in package.dir).
    #[arg(long)]
    pub sha: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Backup id (YYYYMMDD_HHMMSS) to restore, or `latest`.
    #[arg(long, value_name = "ID|latest")]
    pub to: Option<String>,
    /// Also restore the database from the backup (data written since is lost).
    #[arg(long)]
    pub restore_database: bool,
    /// The confirmation text the environment asks for (e.g. "ROLLBACK PRODUCTION").
    #[arg(long, value_name = "TEXT")]
    pub confirm: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct BackupsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Default)]
pub struct CommonArgs {
    /// Environment from tj-deploy.toml, e.g. staging or production.
    #[arg(short, long)]
    pub environment: Option<String>,
    /// The config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Private key file for SSH (else TJ_SSH_KEY, else ssh's defaults).
    #[arg(long, value_name = "FILE")]
    pub ssh_key_file: Option<PathBuf>,
    /// known_hosts file (else TJ_KNOWN_HOSTS, else ~/.ssh/known_hosts).
    #[arg(long, value_name = "FILE")]
    pub known_hosts_file: Option<PathBuf>,
}

#[derive(Args, Debug, Default)]
pub struct DeployArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Commit being deployed (default: GITHUB_SHA, else `git rev-parse HEAD` in package.dir).
    #[arg(long)]
    pub sha: Option<String>,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn flags(cli: Cli) -> Flags {
    let mut f = Flags::default();
    let common = match cli.command {
        Some(Cmd::Deploy(a)) => {
            (f.command, f.sha, f.dry_run) = (Some("deploy".into()), a.sha, a.dry_run);
            a.common
        }
        Some(Cmd::Rollback(a)) => {
            (f.command, f.to, f.restore_database, f.confirm) =
                (Some("rollback".into()), a.to, a.restore_database, a.confirm);
            a.common
        }
        Some(Cmd::Backups(a)) => {
            (f.command, f.json) = (Some("backups".into()), a.json);
            a.common
        }
        Some(Cmd::Check(a)) => {
            (f.command, f.sha) = (Some("check".into()), a.sha);
            a.common
        }
        Some(Cmd::Unlock(c)) => {
            f.command = Some("unlock".into());
            c
        }
        None => CommonArgs::default(),
    };
    (f.environment, f.config, f.ssh_key_file, f.known_hosts_file) = (
        common.environment,
        common.config,
        common.ssh_key_file,
        common.known_hosts_file,
    );
    f
}

/// The process environment, skipping variables that are not UTF-8 (none of ours can be).
fn env_vars() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

pub fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let vars = env_vars();
    ui::init(vars.get("GITHUB_ACTIONS").map(String::as_str) == Some("true"));
    if cli.command.is_none() && !ui::in_actions() {
        ui::error("no command given (try `tj-deploy deploy -e staging`, or --help)");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            ui::error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(flags(cli), &vars)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            ui::error(&e.message);
            ExitCode::from(e.kind.exit_code())
        }
    }
}

async fn run(flags: Flags, vars: &BTreeMap<String, String>) -> Result<()> {
    let inv = Invocation::resolve(flags, vars)?;
    for secret in [&inv.ssh.key, &inv.github_token, &inv.slack_webhook]
        .into_iter()
        .flatten()
    {
        ui::mask(secret.expose());
    }
    let config = Config::load(&inv)?;
    match inv.command.as_str() {
        "deploy" => deploy_command(&config, &inv, vars).await,
        "rollback" => crate::rollback::command(&config, &inv, vars).await,
        "backups" => crate::rollback::list_command(&config, &inv, vars).await,
        "check" => check_command(&config, &inv).await,
        "unlock" => unlock_command(&config, &inv, vars).await,
        other => Err(Error::invalid(format!(
            "command: {other:?} is not one of: deploy, rollback, backups, check, unlock"
        ))),
    }
}

/// The commit to deploy: given, or the package dir's git HEAD.
fn resolve_sha(config: &Config, inv: &Invocation) -> Result<Sha> {
    if let Some(s) = &inv.sha {
        return Ok(s.clone());
    }
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(&config.package_dir)
        .args(["rev-parse", "HEAD"])
        .output();
    match out {
        Ok(o) if o.status.success() => Sha::parse("sha", &String::from_utf8_lossy(&o.stdout)),
        _ => Err(Error::invalid(format!(
            "sha: not given and {} is not in a git checkout (pass --sha or set GITHUB_SHA)",
            config.package_dir.display()
        ))),
    }
}

/// The hosts of the environment, connected; [`Fleet::close`] ends the SSH sessions.
pub(crate) struct Fleet {
    pub hosts: Vec<(HostSpec, AnyTransport)>,
    _ssh: Option<SshContext>,
}

impl Fleet {
    pub fn borrowed(&self) -> Vec<(HostSpec, &AnyTransport)> {
        self.hosts.iter().map(|(h, t)| (h.clone(), t)).collect()
    }
    pub async fn close(self) {
        for (_, t) in self.hosts {
            t.close().await;
        }
    }
}

pub(crate) async fn connect(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<Fleet> {
    if config.env.local {
        let hosts = config
            .env
            .hosts
            .iter()
            .map(|h| (h.clone(), AnyTransport::Local(LocalTransport::new(&h.to_string()))))
            .collect();
        return Ok(Fleet { hosts, _ssh: None });
    }
    let home = vars.get("HOME").map(PathBuf::from);
    let ctx = SshContext::prepare(&inv.ssh, &config.env, home.as_deref())?;
    let mut fleet = Fleet {
        hosts: Vec::new(),
        _ssh: None,
    };
    for h in &config.env.hosts {
        let step = ui::step(&format!("connect [{h}]"), "");
        match ctx.connect(h).await {
            Ok(t) => {
                step.done("");
                fleet.hosts.push((h.clone(), AnyTransport::Ssh(Box::new(t))));
            }
            Err(e) => {
                step.failed(&e.message);
                fleet.close().await;
                let mut e = e;
                e.message.push_str("; nothing was changed on any host");
                return Err(e);
            }
        }
    }
    fleet._ssh = Some(ctx);
    Ok(fleet)
}

/// Reports a finished run everywhere: terminal, Actions outputs and job summary, GitHub check
/// run and deployment, Slack.
pub(crate) async fn publish(summary: &Summary, inv: &Invocation, github: &crate::github::Reporter) {
    finish(summary, inv);
    github.finish(inv, summary).await;
    if let Some(hook) = &inv.slack_webhook
        && let Ok(http) = crate::health::client()
    {
        crate::notify::slack::post(&http, hook.expose(), &crate::notify::slack::payload(summary)).await;
    }
}

fn finish(summary: &Summary, inv: &Invocation) {
    println!("{}", summary.to_text());
    if let Err(e) = actions::publish(
        summary,
        inv.github.output_file.as_deref(),
        inv.github.summary_file.as_deref(),
    ) {
        ui::warn(&format!("could not write the Actions outputs or job summary: {e}"));
    }
}

async fn deploy_command(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<()> {
    let sha = resolve_sha(config, inv)?;
    if inv.dry_run {
        println!(
            "Dry run: deploy {} ({}) to {} — nothing will be changed.",
            config.app,
            sha.short(),
            config.env.name
        );
        for (i, (name, detail)) in deploy::plan(config, Some(&sha)).iter().enumerate() {
            println!("{:>3}. {name:<8} {detail}", i + 1);
        }
        println!("On a failure after the switch: current → previous release, reload, verify, mark BAD_RELEASE.");
        return Ok(());
    }
    let cancel = Cancel::install();
    let started = Instant::now();
    let started_at = chrono::Utc::now();

    let (mut github, gates, verdict) = preflight(config, inv, &sha, true).await?;
    if let Err(e) = verdict {
        let summary = refused_summary(config, inv, "deploy", &sha, gates, &e, started, started_at);
        publish(&summary, inv, &github).await;
        return Err(e);
    }

    if inv.slack_on_start
        && let Some(hook) = &inv.slack_webhook
    {
        let payload = crate::notify::slack::start_payload(
            &config.app,
            config.env.name.as_str(),
            sha.as_str(),
            &inv.actor,
            inv.github.run_url().as_deref(),
        );
        crate::notify::slack::post(&crate::health::client()?, hook.expose(), &payload).await;
    }
    // Before any host is touched, a failure still closes the check run and the deployment.
    let early = async |e: Error, gates: Vec<crate::github::gates::Gate>, github: &crate::github::Reporter| {
        let mut summary = refused_summary(config, inv, "deploy", &sha, gates, &e, started, started_at);
        if e.kind == crate::error::Kind::Failed {
            summary.status = crate::report::Status::Failure;
        }
        publish(&summary, inv, github).await;
        e
    };
    let work = tempfile::Builder::new()
        .prefix("tj-deploy-")
        .tempdir()
        .map_err(|e| Error::failed(format!("temp dir: {e}")))?;
    let (pkg, package_step) = match build_package(config, &sha, work.path(), &cancel).await {
        Ok(p) => p,
        Err(e) => return Err(early(e, gates, &github).await),
    };
    let planned = crate::config::ReleaseId::from_time(started_at).to_string();
    let request = crate::github::report::DeploymentRequest {
        sha: &sha,
        environment: config.env.name.as_str(),
        production: config.env.name.as_str() == "production",
        marker: "",
        release: Some(&planned),
        description: &format!("tj-deploy {} to {}", sha.short(), config.env.name),
    };
    github.start_deployment(inv, &request).await;

    let fleet = match connect(config, inv, vars).await {
        Ok(f) => f,
        Err(e) => return Err(early(e, gates, &github).await),
    };
    let http = crate::health::client()?;
    let run = deploy::Run {
        config,
        inv,
        sha: &sha,
        package: &pkg,
        started,
        started_at,
        steps: Steps::new(&cancel, vec![package_step]),
        gates,
        github: github.client(),
    };
    let (summary, error) = run.deploy(fleet.borrowed(), &http).await;
    fleet.close().await;
    publish(&summary, inv, &github).await;
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// GitHub's side of the start of a run: our check run `in_progress`, then the gates
/// (`deploy`: all of them; else those that apply to a pull request).
async fn preflight(
    config: &Config,
    inv: &Invocation,
    sha: &Sha,
    deploy: bool,
) -> Result<(crate::github::Reporter, Vec<crate::github::gates::Gate>, Result<()>)> {
    let mut github = crate::github::Reporter::new(inv)?;
    github.start_check(inv, sha, config.env.name.as_str()).await;
    let own_check = crate::github::check_name(config.env.name.as_str());
    let wanted = crate::github::gates::Wanted {
        env: &config.env,
        sha,
        git_ref: inv.github.git_ref.as_deref(),
        own_check: &own_check,
        deploy,
    };
    let (gates, verdict) = github.gates(&wanted).await;
    Ok((github, gates, verdict))
}

/// Builds the package into `dir` with a progress bar; a signal stops it.
async fn build_package(
    config: &Config,
    sha: &Sha,
    dir: &std::path::Path,
    cancel: &Cancel,
) -> Result<(package::Package, StepRecord)> {
    let name = package::file_name(&config.app, sha.short());
    let step = ui::step("package", &config.package_dir.display().to_string());
    let total = package::input_size(&config.package_dir, &config.exclude)?;
    let bar = ui::progress(total, "package");
    let built = {
        let (src, exclude, out, bar) = (
            config.package_dir.clone(),
            config.exclude.clone(),
            dir.to_path_buf(),
            bar.clone(),
        );
        cancel
            .guard("package", async move {
                tokio::task::spawn_blocking(move || package::build(&src, &exclude, &out, &name, &|n| bar.inc(n)))
                    .await
                    .map_err(|e| Error::failed(format!("package: {e}")))?
            })
            .await
    };
    bar.finish_and_clear();
    match built {
        Ok(p) => {
            let note = format!("{} files, {} bytes, sha256 {}", p.files, p.size, &p.sha256[..12]);
            let seconds = step.done(&note).as_secs_f64();
            Ok((
                p,
                StepRecord {
                    host: "local".into(),
                    name: "package".into(),
                    seconds,
                    ok: true,
                    note,
                },
            ))
        }
        Err(e) => {
            step.failed(&e.message);
            Err(e)
        }
    }
}

/// The summary of a run that a gate refused: nothing was touched.
#[allow(clippy::too_many_arguments)]
fn refused_summary(
    config: &Config,
    inv: &Invocation,
    command: &str,
    sha: &Sha,
    gates: Vec<crate::github::gates::Gate>,
    e: &Error,
    started: Instant,
    started_at: chrono::DateTime<chrono::Utc>,
) -> Summary {
    Summary {
        command: command.to_string(),
        status: crate::report::Status::Refused,
        environment: config.env.name.to_string(),
        app: config.app.clone(),
        hosts: config.env.hosts.iter().map(|h| h.to_string()).collect(),
        commit: Some(sha.to_string()),
        release: None,
        backup: None,
        previous_release: None,
        actor: inv.actor.clone(),
        run_url: inv.github.run_url(),
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        duration_seconds: started.elapsed().as_secs_f64(),
        package: None,
        gates,
        steps: Vec::new(),
        checks: Vec::new(),
        message: e.message.clone(),
        environment_url: None,
        branch: config.env.branch.clone(),
        commit_url: crate::report::commit_link(&inv.github, Some(sha.as_str())),
        finished_at: crate::report::now_rfc3339(),
        ..Default::default()
    }
}

/// `tj-deploy check`: the gates that apply to a pull request, the package build and the plan,
/// posted as a check run. Connects to no host.
async fn check_command(config: &Config, inv: &Invocation) -> Result<()> {
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
    let plan: Vec<String> = deploy::plan(config, Some(&sha))
        .iter()
        .enumerate()
        .map(|(i, (n, d))| format!("{:>3}. {n:<8} {d}", i + 1))
        .collect();
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
    match &verdict {
        Ok(()) => {
            summary.status = crate::report::Status::Success;
            summary.message = format!(
                "ready to deploy {} to {}; the plan:\n\n```\n{}\n```",
                sha.short(),
                config.env.name,
                plan.join("\n")
            );
        }
        Err(e) => summary.message = e.message.clone(),
    }
    publish(&summary, inv, &github).await;
    verdict
}

/// The PM2 ecosystem lint in `check`: with this machine's `node` when there is one (the deploy
/// runs it again on each host); its findings are warnings, never a failed check.
fn ecosystem_gate(config: &Config, warnings: &mut Vec<String>) -> crate::github::gates::Gate {
    use crate::ecosystem::{Local, lint_local};
    let current = Layout::new(config.env.deploy_dir.clone(), config.env.backup_dir.clone()).current();
    let (ok, reason) = match lint_local(&config.package_dir, config.env.reload.as_deref(), &current) {
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
                ui::warn(x);
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

async fn unlock_command(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<()> {
    let l = Layout::new(config.env.deploy_dir.clone(), config.env.backup_dir.clone());
    async fn one<T: Transport>(t: &T, l: &Layout) -> Result<()> {
        match lock::force_remove(t, l).await? {
            Some(holder) => ui::info(&format!("{}: removed the deploy lock held by {holder}", t.name())),
            None => ui::info(&format!("{}: no deploy lock was held", t.name())),
        }
        Ok(())
    }
    let fleet = connect(config, inv, vars).await?;
    let mut result = Ok(());
    for (_, t) in &fleet.hosts {
        if result.is_ok() {
            result = one(t, &l).await;
        }
    }
    fleet.close().await;
    result
}
