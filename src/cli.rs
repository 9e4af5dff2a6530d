//! The command line (DESIGN.md §2): clap's types, the flags they become, and the top of every
//! run: parse, resolve inputs and config once, dispatch to the command in [`crate::app`], and
//! turn the outcome into an exit code.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Flags, Invocation};
use crate::error::{Error, Result};
use crate::{app, ui};

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
    Unlock(UnlockArgs),
    /// Scaffold tj-deploy.toml, ecosystem.config.js and the GitHub workflows for an app.
    Init(InitArgs),
    /// List deploys, rollbacks and restarts from the hosts' deployments.log.
    History(HistoryArgs),
    /// DORA figures from deployments.log: frequency, change failure rate, time to restore.
    Stats(StatsArgs),
    /// Per host: live release, PM2 workers and the release each runs, health, lock, disk.
    Status(BackupsArgs),
    /// Reload (or with --hard restart) the app from current: locked, verified, logged.
    Restart(RestartArgs),
    /// PM2 logs of the app on every host, prefixed with the host, merged in time order.
    Logs(LogsArgs),
    /// First-time server setup: create what is missing, then PASS/WARN/FAIL per host.
    Setup(SetupArgs),
}

#[derive(Args, Debug, Default)]
pub struct SetupArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Only check; change nothing (exit 1 if anything FAILs).
    #[arg(long)]
    pub check: bool,
    /// Adopt a runbook-style app (unpacked in deploy_dir, run by PM2 from there): move it into
    /// releases/<id> with a `current` link and hand PM2 over without stopping it.
    #[arg(long, conflicts_with = "check")]
    pub adopt: bool,
    /// With --adopt: print the plan and change nothing.
    #[arg(long, requires = "adopt")]
    pub dry_run: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Default)]
pub struct LogsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Lines of each log file.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub lines: usize,
    /// Only the error logs.
    #[arg(long)]
    pub err: bool,
    /// Only lines holding TEXT.
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,
    /// Follow every host's logs until interrupted.
    #[arg(long)]
    pub follow: bool,
}

#[derive(Args, Debug, Default)]
pub struct RestartArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// `pm2 restart` (stop, then start: downtime) instead of a zero-downtime reload.
    #[arg(long)]
    pub hard: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug, Default)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// How many runs to list, newest first.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Default)]
pub struct StatsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The period to look back over: 30d, 2w, 12h.
    #[arg(long, value_name = "PERIOD", default_value = "30d")]
    pub since: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Default)]
pub struct InitArgs {
    /// The app's repository.
    #[arg(long, value_name = "PATH", default_value = ".")]
    pub dir: PathBuf,
    /// Overwrite files that exist and differ.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Default)]
pub struct UnlockArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Say whose lock would be removed on each host; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
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
    /// Print the plan (which backup, which release, every step) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
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
    /// Deploy migrations flagged as destructive where destructive_migrations = "confirm".
    #[arg(long)]
    pub allow_destructive_migrations: bool,
    /// Watch the release for DURATION after it went live (overrides the environment's
    /// watch.duration; 0s skips the watch).
    #[arg(long, value_name = "DURATION")]
    pub watch: Option<String>,
}

fn flags(cli: Cli) -> Flags {
    let mut f = Flags::default();
    let common = match cli.command {
        Some(Cmd::Deploy(a)) => {
            (f.command, f.sha, f.dry_run, f.allow_destructive_migrations, f.watch) = (
                Some("deploy".into()),
                a.sha,
                a.dry_run,
                a.allow_destructive_migrations,
                a.watch,
            );
            a.common
        }
        Some(Cmd::Rollback(a)) => {
            (f.command, f.to, f.restore_database, f.confirm, f.dry_run) =
                (Some("rollback".into()), a.to, a.restore_database, a.confirm, a.dry_run);
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
        Some(Cmd::Unlock(a)) => {
            (f.command, f.dry_run) = (Some("unlock".into()), a.dry_run);
            a.common
        }
        Some(Cmd::History(a)) => {
            (f.command, f.json, f.ops.limit) = (Some("history".into()), a.json, Some(a.limit));
            a.common
        }
        Some(Cmd::Stats(a)) => {
            (f.command, f.json, f.ops.since) = (Some("stats".into()), a.json, Some(a.since));
            a.common
        }
        Some(Cmd::Status(a)) => {
            (f.command, f.json) = (Some("status".into()), a.json);
            a.common
        }
        Some(Cmd::Restart(a)) => {
            (f.command, f.ops.hard, f.dry_run) = (Some("restart".into()), a.hard, a.dry_run);
            a.common
        }
        Some(Cmd::Logs(a)) => {
            f.command = Some("logs".into());
            (f.ops.lines, f.ops.err, f.ops.grep, f.ops.follow) = (Some(a.lines), a.err, a.grep, a.follow);
            a.common
        }
        Some(Cmd::Setup(a)) => {
            (f.command, f.ops.check, f.ops.adopt, f.json, f.dry_run) =
                (Some("setup".into()), a.check, a.adopt, a.json, a.dry_run);
            a.common
        }
        // Dispatched in main() before any of this: it reads no inputs and no config.
        Some(Cmd::Init(_)) | None => CommonArgs::default(),
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
    crate::secret_env::scrub_own();
    ui::init(vars.get("GITHUB_ACTIONS").map(String::as_str) == Some("true"));
    let cli = match crate::action_args::apply(cli, &vars) {
        Ok(cli) => cli,
        Err(e) => {
            ui::error(&e.message);
            return ExitCode::from(2);
        }
    };
    if cli.command.is_none() && !ui::in_actions() {
        ui::error("no command given (try `tj-deploy deploy -e staging`, or --help)");
        return ExitCode::from(2);
    }
    if let Some(Cmd::Init(a)) = &cli.command {
        return exit(crate::init::command(&a.dir, a.force));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            ui::error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    exit(runtime.block_on(run(flags(cli), &vars)))
}

fn exit(result: Result<()>) -> ExitCode {
    match result {
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
    if inv.dry_run
        && matches!(
            inv.command.as_str(),
            "backups" | "check" | "history" | "stats" | "status" | "logs"
        )
    {
        // Never a silent real run: a command without a plan says so instead of ignoring the flag.
        return Err(Error::invalid(format!(
            "dry-run: `{}` changes no host, so it has no dry run; drop --dry-run (input 'dry-run')",
            inv.command
        )));
    }
    match inv.command.as_str() {
        "deploy" => app::deploy::command(&config, &inv, vars).await,
        "rollback" => app::rollback::command(&config, &inv, vars).await,
        "backups" => app::backups::command(&config, &inv, vars).await,
        "check" => app::check::command(&config, &inv).await,
        "unlock" => app::unlock::command(&config, &inv, vars).await,
        "history" => app::history::history(&config, &inv, vars).await,
        "stats" => app::history::stats(&config, &inv, vars).await,
        "status" => app::status::command(&config, &inv, vars).await,
        "restart" => app::restart::command(&config, &inv, vars).await,
        "logs" => app::logs::command(&config, &inv, vars).await,
        "setup" => app::setup::command(&config, &inv, vars).await,
        other => {
            let commands = [
                "deploy", "rollback", "backups", "check", "unlock", "history", "stats", "status",
            ];
            Err(Error::invalid(format!(
                "command: {other:?} is not a command ({}one of: {})",
                crate::suggest::hint(other, commands),
                commands.join(", ")
            )))
        }
    }
}
