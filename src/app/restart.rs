//! `tj-deploy restart`: the emergency "Application Down" procedure made safe. Takes the lock,
//! reloads the app from `current` (or, with `--hard`, `pm2 restart`s it; both with the
//! keep-alive drain wired in when `drain` is on), verifies it as a
//! deploy does ([`crate::pipeline::activate::verify`]), logs a `restart` line in every host's
//! deployments.log and reports like every command. `--dry-run` prints the plan.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use crate::config::{Config, Invocation, ReleaseId};
use crate::error::{Error, Kind, Result};
use crate::lock::LockOwner;
use crate::pipeline::{Ctx, HostRun, Progress, activate, crashloop, lock_all, unlock_all};
use crate::remote::commands::{self, HookEnv};
use crate::remote::{Mode, Script, Transport};
use crate::report::{Status, Summary};
use crate::signals::Cancel;
use crate::steps::Steps;
use crate::{health, state};

/// What restarts the app on a host, and how it is described.
fn script(config: &Config, hard: bool, l: &crate::remote::layout::Layout, env: &HookEnv) -> Result<(Script, String)> {
    let Some(reload) = &config.env.reload else {
        return Err(Error::invalid(
            "restart: the environment has no `reload` command, so tj-deploy does not know how the app runs",
        ));
    };
    if !hard {
        // The same reload a deploy runs, the keep-alive drain wired in when it is on.
        let script = match config.env.drain {
            true => commands::reload_drained(l, reload, env, config.env.drain_timeout),
            false => commands::reload(l, reload, env),
        };
        return Ok((script, reload.clone()));
    }
    let what = hard_command(reload).ok_or_else(|| {
        Error::invalid(format!(
            "restart --hard: `reload` ({reload}) runs no `pm2 reload`/`startOrReload` to turn into `pm2 restart`; use restart without --hard"
        ))
    })?;
    // The user's own command with `restart` for the reload verb (its prefix, file and flags
    // kept: `--env`, `--only`, `npx`, `PM2_HOME=…`), on the drain's wrapper as a reload is:
    // `pm2 restart <file>` takes node_args from the file, so the restarted workers drain too.
    let script = match config.env.drain {
        true => commands::reload_drained(l, &what, env, config.env.drain_timeout),
        false => commands::reload(l, &what, env),
    };
    Ok((script, what))
}

/// PM2's reload verbs, which `--hard` turns into `restart`.
const RELOAD_VERBS: [&str; 4] = ["reload", "startOrReload", "startOrGracefulReload", "gracefulReload"];

/// `reload` with each PM2 reload verb (the first word after a `pm2` that is not an option)
/// replaced by `restart`, everything else as written; `None` when it has none.
pub fn hard_command(reload: &str) -> Option<String> {
    let words = crate::ecosystem::words(reload);
    let mut out = String::new();
    let mut at = 0;
    for (i, w) in words.iter().enumerate() {
        let after_pm2 = words[..i]
            .iter()
            .rev()
            .find(|p| !p.text.starts_with('-'))
            .is_some_and(|p| p.text.rsplit('/').next() == Some("pm2"));
        if after_pm2 && RELOAD_VERBS.contains(&w.text.as_str()) {
            out.push_str(&reload[at..w.span.start]);
            out.push_str("restart");
            at = w.span.end;
        }
    }
    (at > 0).then(|| out + &reload[at..])
}

pub async fn command(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<()> {
    let hard = inv.ops.hard;
    let how = if hard {
        "restart (pm2 restart: stop, then start)"
    } else {
        "reload (zero-downtime)"
    };
    if inv.dry_run {
        println!(
            "Dry run: restart {} — nothing will be changed. On each of {} host(s): lock, {how} from current, verify {}, log a `restart` line, unlock.",
            config.env.name,
            config.env.hosts.len(),
            config.env.health_url
        );
        return Ok(());
    }
    let cancel = Cancel::install();
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let fleet = super::connect(config, inv, vars).await?;
    let http = health::client()?;
    let steps = Steps::new(&cancel, Vec::new()).with_timeouts(config.env.timeouts.clone());
    let github = crate::github::Reporter::new(inv)?;
    let ctx = Ctx {
        config,
        inv,
        layout: super::backups::layout(config),
        steps: &steps,
        http: &http,
        owner: LockOwner::new(inv, "restart", config.env.name.as_str(), None, started_at),
    };
    let mut hosts: Vec<HostRun<&crate::remote::AnyTransport>> =
        fleet.borrowed().into_iter().map(|(s, t)| HostRun::new(s, t)).collect();
    let (mut checks, mut crashes) = (Vec::new(), Vec::new());
    let result = run(&ctx, &mut hosts, hard, &mut checks, &mut crashes).await;
    let commit = hosts
        .first()
        .and_then(|h| h.previous())
        .and_then(|r| r.revision.clone());
    let (status, message) = match &result {
        Ok(()) => (
            Status::Success,
            format!("{how} of the live release verified on every host"),
        ),
        Err(e) if e.kind == Kind::Refused && hosts.iter().all(|h| h.progress == Progress::Untouched) => {
            (Status::Refused, e.message.clone())
        }
        Err(e) => (Status::Failure, format!("restart failed: {}", e.message)),
    };
    let summary = Summary {
        status,
        release: hosts.first().and_then(|h| h.state.current).map(|c| c.to_string()),
        steps: steps.take(),
        checks,
        message,
        warnings: crate::drain::fallback_warning(config.env.reload.as_deref(), config.env.drain)
            .into_iter()
            .chain(crashes)
            .collect(),
        ..Summary::begin(config, inv, "restart", started_at)
    }
    .end(inv, commit.as_deref(), started.elapsed().as_secs_f64());
    finish(&ctx, &hosts, &summary, ReleaseId::from_time(started_at), hard).await;
    fleet.close().await;
    super::publish(&summary, inv, &github).await;
    result
}

async fn run<T: Transport>(
    ctx: &Ctx<'_>,
    hosts: &mut [HostRun<T>],
    hard: bool,
    checks: &mut Vec<crate::health::CheckResult>,
    crashes: &mut Vec<String>,
) -> Result<()> {
    lock_all(ctx, hosts).await?;
    for h in hosts.iter_mut() {
        h.state = state::inspect(&h.t, &ctx.layout, None).await?;
        let name = h.name();
        let Some(live) = h.state.current else {
            return Err(Error::failed(format!("{name}: no live release (`current`) to restart")));
        };
        let revision = h.previous().and_then(|r| r.revision.clone()).unwrap_or_default();
        let env = HookEnv {
            environment: ctx.env_name(),
            release: live,
            revision: &revision,
        };
        let (script, what) = script(ctx.config, hard, &ctx.layout, &env)?;
        let step = if hard { "restart" } else { "reload" };
        ctx.steps
            .run(&name, step, &what, h.exec(&script, Mode::Stream, &what))
            .await?;
        // The emergency restart of an app that keeps crashing must not read as a fix.
        let counts = crashloop::read(ctx, h).await;
        let since = Instant::now();
        let url = health::url_for(&ctx.config.env.health_url, &h.spec);
        let tool = match ctx.config.env.health_from_host {
            true => Some(crate::health_host::detect(&h.t).await?),
            false => None,
        };
        let v = ctx
            .steps
            .run(&name, "verify", &url, activate::verify(ctx, h, live, &revision, tool))
            .await?;
        checks.extend(v.checks);
        if let Some(before) = &counts {
            crashes.extend(crashloop::after(ctx, h, before, since, true).await);
        }
    }
    Ok(())
}

/// Logs the restart on every host it locked, then unlocks.
async fn finish<T: Transport>(ctx: &Ctx<'_>, hosts: &[HostRun<T>], summary: &Summary, id: ReleaseId, hard: bool) {
    if summary.status != Status::Refused {
        let markdown = summary.to_markdown();
        for h in hosts.iter().filter(|h| h.progress > Progress::Untouched) {
            let fields = json!({
                "release": h.state.current.map(|c| c.to_string()),
                "hard": hard,
            });
            let line = crate::journal::line(summary, &id.to_string(), h.t.name(), fields);
            crate::journal::record(&h.t, &ctx.layout, &line, &markdown).await;
        }
    }
    unlock_all(ctx, hosts).await;
}

#[cfg(test)]
mod tests {
    use super::hard_command;

    #[test]
    fn hard_swaps_the_reload_verb_and_keeps_the_rest() {
        for (reload, hard) in [
            (
                "pm2 startOrReload ecosystem.config.js --update-env",
                "pm2 restart ecosystem.config.js --update-env",
            ),
            (
                "pm2 startOrReload pm2.json --env production --only web",
                "pm2 restart pm2.json --env production --only web",
            ),
            (
                "PM2_HOME=/x npx pm2 reload \"$TJ_CURRENT/ecosystem.config.js\"",
                "PM2_HOME=/x npx pm2 restart \"$TJ_CURRENT/ecosystem.config.js\"",
            ),
            (
                "pm2 startOrGracefulReload ecosystem.config.js&&pm2 save",
                "pm2 restart ecosystem.config.js&&pm2 save",
            ),
            (
                "node_modules/.bin/pm2 gracefulReload all",
                "node_modules/.bin/pm2 restart all",
            ),
            (
                "pm2 --silent reload trading-journal-prod",
                "pm2 --silent restart trading-journal-prod",
            ),
            ("pm2 reload reload; pm2 reload b", "pm2 restart reload; pm2 restart b"),
        ] {
            assert_eq!(hard_command(reload).as_deref(), Some(hard), "{reload}");
        }
        assert_eq!(hard_command("./scripts/reload.sh"), None);
        assert_eq!(hard_command("systemctl reload app"), None);
    }
}
