//! Per-command orchestration (one module per command), and what every command does around its
//! own work: resolve the commit, connect to the environment's hosts, build the package, run the
//! GitHub gates, and publish the finished run everywhere (terminal, Actions outputs and job
//! summary, GitHub, Slack). The pipelines ([`crate::pipeline`]) know nothing of this module.

pub mod adopt;
pub mod backups;
pub mod check;
pub mod deploy;
pub mod dryrun;
pub mod history;
pub mod logs;
pub mod restart;
pub mod rollback;
pub mod setup;
pub mod status;
pub mod unlock;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::actions;
use crate::config::{Config, HostSpec, Invocation, Sha};
use crate::error::{Error, Result};
use crate::package;
use crate::remote::AnyTransport;
use crate::remote::local::LocalTransport;
use crate::remote::ssh::SshContext;
use crate::report::StepRecord;
use crate::report::Summary;
use crate::signals::Cancel;
use crate::ui;

/// The hosts of the environment, connected; [`Fleet::close`] ends the SSH sessions.
pub struct Fleet {
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

pub async fn connect(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<Fleet> {
    Ok(open(config, inv, vars, false).await?.0)
}

/// For the commands that only read (status, logs, history, stats) and `setup`: every host that answers,
/// connected, and for each one that does not, its SSH error — one host down must not hide the
/// others when the point is to look. The caller reports them and ends with exit 1.
pub async fn connect_reachable(
    config: &Config,
    inv: &Invocation,
    vars: &BTreeMap<String, String>,
) -> Result<(Fleet, Vec<(HostSpec, String)>)> {
    open(config, inv, vars, true).await
}

/// Connects to every host; one that does not answer is skipped with its error (`skip_down`) or
/// ends it all, nothing changed.
async fn open(
    config: &Config,
    inv: &Invocation,
    vars: &BTreeMap<String, String>,
    skip_down: bool,
) -> Result<(Fleet, Vec<(HostSpec, String)>)> {
    if config.env.local {
        let hosts = config
            .env
            .hosts
            .iter()
            .map(|h| (h.clone(), AnyTransport::Local(LocalTransport::new(&h.to_string()))))
            .collect();
        return Ok((Fleet { hosts, _ssh: None }, Vec::new()));
    }
    let home = vars.get("HOME").map(PathBuf::from);
    let ctx = SshContext::prepare(&inv.ssh, &config.env, home.as_deref())?;
    let mut fleet = Fleet {
        hosts: Vec::new(),
        _ssh: None,
    };
    let mut down = Vec::new();
    for h in &config.env.hosts {
        let step = ui::step(&format!("connect [{h}]"), "");
        match ctx.connect(h).await {
            Ok(t) => {
                step.done("");
                fleet.hosts.push((h.clone(), AnyTransport::Ssh(Box::new(t))));
            }
            Err(e) if skip_down => {
                step.failed(&e.message);
                down.push((h.clone(), without_host(h, &e.message).to_string()));
            }
            Err(mut e) => {
                step.failed(&e.message);
                fleet.close().await;
                e.message.push_str("; nothing was changed on any host");
                return Err(e);
            }
        }
    }
    fleet._ssh = Some(ctx);
    Ok((fleet, down))
}

/// An error about host `h` without the host's name in front (`connect deploy@b: …`,
/// `deploy@b: …`), for messages that name the host already.
pub(crate) fn without_host<'a>(h: &HostSpec, message: &'a str) -> &'a str {
    let name = format!("{h}: ");
    let named = |m: &'a str| m.strip_prefix(name.as_str());
    message
        .strip_prefix("connect ")
        .and_then(named)
        .or_else(|| named(message))
        .unwrap_or(message)
}

/// The error that ends a read-only command when some hosts were not read.
pub(crate) fn not_read(command: &str, total: usize, down: &[(HostSpec, String)]) -> Result<()> {
    if down.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = down
        .iter()
        .map(|(h, e)| format!("{h} ({})", without_host(h, e)))
        .collect();
    Err(Error::failed(format!(
        "{command}: {} of {total} host(s) not read: {}",
        down.len(),
        list.join("; ")
    )))
}

/// Reports a finished run everywhere: terminal, Actions outputs and job summary, GitHub check
/// run and deployment, Slack.
pub async fn publish(summary: &Summary, inv: &Invocation, github: &crate::github::Reporter) {
    finish(summary, inv);
    github.finish(inv, summary).await;
    if let Some(hook) = &inv.slack_webhook
        && let Ok(http) = crate::health::client()
    {
        crate::notify::slack::post(&http, hook.expose(), &crate::notify::slack::payload(summary)).await;
    }
}

fn finish(summary: &Summary, inv: &Invocation) {
    ui::print_foreign(&summary.to_text());
    if let Err(e) = actions::publish(
        summary,
        inv.github.output_file.as_deref(),
        inv.github.summary_file.as_deref(),
    ) {
        ui::warn(&format!("could not write the Actions outputs or job summary: {e}"));
    }
}

/// The commit to deploy: given, or the package dir's git HEAD.
pub(crate) fn resolve_sha(config: &Config, inv: &Invocation) -> Result<Sha> {
    if let Some(s) = &inv.sha {
        return Ok(s.clone());
    }
    let out = crate::secret_env::scrub(&mut std::process::Command::new("git"))
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

/// GitHub's side of the start of a run: our check run `in_progress`, then the gates
/// (`deploy`: all of them; else those that apply to a pull request).
pub(crate) async fn preflight(
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
        pull_request: inv.pull_request.as_ref(),
    };
    let (gates, verdict) = github.gates(&wanted).await;
    Ok((github, gates, verdict))
}

/// Builds the package into `dir` with a progress bar; a signal stops it.
pub(crate) async fn build_package(
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
pub(crate) fn refused_summary(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_down_is_named_once() {
        let h = HostSpec::parse("hosts", "deploy@b").unwrap();
        assert_eq!(
            without_host(&h, "connect deploy@b: ssh: Connection refused"),
            "ssh: Connection refused"
        );
        assert_eq!(without_host(&h, "deploy@b: no live release"), "no live release");
        assert_eq!(without_host(&h, "connect timed out"), "connect timed out");
        let e = not_read("stats", 2, &[(h, "connect deploy@b: refused".into())]).unwrap_err();
        assert_eq!(e.message, "stats: 1 of 2 host(s) not read: deploy@b (refused)");
    }
}
