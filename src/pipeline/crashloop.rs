//! Crash loops seen at verify: a PM2 app whose workers keep restarting (the runbook's
//! `script: 'npm'` in cluster mode, each `next start` child fighting over the port) still
//! passes its health checks whenever one worker answers. The app's workers — those PM2 started
//! from under `deploy_dir`, never another app's; none found, no check — `restart_time` (and
//! `unstable_restarts`) and status are read right after the reload, which itself counts one
//! restart per worker, and again once verification ended: for a deploy or restart at least
//! [`SETTLE`] after the first reading, for a rollback at once (it must stay fast, and only
//! reports). Restarts in between, or a worker not `online` at the end, are a warning in every
//! summary, and a failure of a deploy with `availability = "enforce"` (which then rolls back).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::pipeline::{Ctx, HostRun};
use crate::remote::{Mode, Transport, commands};
use crate::watch::sample::{self, Worker};

/// The least time between the two readings: a worker that dies within a second or two of its
/// start (the usual crash loop) restarts at least once in it. Verification's own duration
/// counts towards it.
pub const SETTLE: Duration = Duration::from_millis(1500);

/// Each worker's (app, restarts, unstable restarts, status) per `pm_id`, read at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts(BTreeMap<i64, (String, i64, i64, String)>);

impl Counts {
    pub fn of(workers: &[Worker]) -> Counts {
        Counts(
            workers
                .iter()
                .map(|w| (w.id, (w.name.clone(), w.restarts, w.unstable, w.status.clone())))
                .collect(),
        )
    }

    /// From `pm2 jlist` output: only the workers started from under `deploy_dir`. `None` when
    /// there is no list or no such worker (nothing of this app to compare).
    pub fn parse(stdout: &str, deploy_dir: &str) -> Option<Counts> {
        let workers = sample::own_workers(stdout, deploy_dir)?;
        (!workers.is_empty()).then(|| Counts::of(&workers))
    }
}

/// The app's workers' counts on the host; `None`: nothing to compare (see [`Counts::parse`]).
pub async fn read<T: Transport>(ctx: &Ctx<'_>, h: &HostRun<T>) -> Option<Counts> {
    let out = h.t.run(&commands::pm2_list(&ctx.layout), Mode::Capture).await.ok()?;
    Counts::parse(&out.stdout, ctx.layout.deploy_dir.as_str())
}

/// Restarts per app between two readings, counted over the workers present in both (a worker
/// PM2 replaced under a new id is not compared). A worker's restarts are the larger of its
/// `restart_time` and `unstable_restarts` increases: PM2 counts an early restart in both.
pub fn restarted(before: &Counts, after: &Counts) -> Vec<(String, i64)> {
    let mut apps: BTreeMap<String, i64> = BTreeMap::new();
    for (id, (name, restarts, unstable, _)) in &after.0 {
        let Some((_, r0, u0, _)) = before.0.get(id) else {
            continue;
        };
        let n = (restarts - r0).max(unstable - u0);
        if n > 0 {
            *apps.entry(name.clone()).or_default() += n;
        }
    }
    apps.into_iter().collect()
}

/// Workers not `online` at the second reading, as (app, `pm_id`, status): errored or stopped,
/// or in any other state (launching, waiting restart) that they were already out of `online`
/// in at the first reading — not serving for the whole settle, restarts counted or not.
pub fn down(before: &Counts, after: &Counts) -> Vec<(String, i64, String)> {
    after
        .0
        .iter()
        .filter(|(id, (_, _, _, status))| {
            let was_down = before.0.get(*id).is_some_and(|b| b.3 != "online");
            status != "online" && (matches!(status.as_str(), "errored" | "stopped") || was_down)
        })
        .map(|(id, (name, _, _, status))| (name.clone(), *id, status.clone()))
        .collect()
}

/// The warning lines for `host`: one per app that restarted, one per worker down at the end.
pub fn lines(host: &str, restarts: &[(String, i64)], down: &[(String, i64, String)]) -> Vec<String> {
    let restarted = restarts.iter().map(|(app, n)| {
        format!("{host}: PM2 restarted app {app}'s workers {n} time(s) during verification (crash loop?)")
    });
    let down = down
        .iter()
        .map(|(app, id, status)| format!("{host}: PM2 app {app}: worker {id} is {status} after the reload"));
    restarted.chain(down).collect()
}

/// How long after the first reading the second one waits: [`SETTLE`] from the first reading
/// for a deploy or restart; nothing for a rollback.
pub fn wait(elapsed: Duration, settle: bool) -> Duration {
    match settle {
        true => SETTLE.saturating_sub(elapsed),
        false => Duration::ZERO,
    }
}

/// Once verification ended: waits as [`wait`] says, reads the counts again and returns what
/// restarted or is down (each line also a `::warning::` now).
pub async fn after<T: Transport>(
    ctx: &Ctx<'_>,
    h: &HostRun<T>,
    before: &Counts,
    since: Instant,
    settle: bool,
) -> Vec<String> {
    tokio::time::sleep(wait(since.elapsed(), settle)).await;
    let Some(now) = read(ctx, h).await else {
        return Vec::new();
    };
    let found = lines(&h.name(), &restarted(before, &now), &down(before, &now));
    for l in &found {
        crate::ui::warn(l);
    }
    found
}

/// Puts a verification's crash-loop lines among the run's warnings; a deploy with
/// `availability = "enforce"` fails on them (a rollback only reports: undoing it would put
/// back the release being rolled away from).
pub fn decide(ctx: &Ctx<'_>, found: Vec<String>, warnings: &RefCell<Vec<String>>, deploy: bool) -> Result<()> {
    let Some(first) = found.first().cloned() else {
        return Ok(());
    };
    warnings.borrow_mut().extend(found);
    if deploy && ctx.config.env.availability_enforce {
        return Err(Error::failed(format!("verify: {first} (availability = \"enforce\")")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(name: &str, id: i64, restarts: i64, unstable: i64) -> Worker {
        ws(name, id, restarts, unstable, "online")
    }

    fn ws(name: &str, id: i64, restarts: i64, unstable: i64, status: &str) -> Worker {
        Worker {
            name: name.into(),
            id,
            status: status.into(),
            restarts,
            unstable,
            memory: 0,
            cpu: 0.0,
        }
    }

    #[test]
    fn restarts_between_the_readings_per_app() {
        let before = Counts::of(&[w("web", 0, 1, 0), w("web", 1, 1, 0), w("jobs", 2, 4, 0)]);
        // Reloaded, then quiet: nothing.
        assert!(restarted(&before, &before).is_empty());
        assert!(down(&before, &before).is_empty());
        // Worker 0 restarted 3 times, worker 1 twice (counted as unstable only), jobs quiet.
        let after = Counts::of(&[w("web", 0, 4, 3), w("web", 1, 1, 2), w("jobs", 2, 4, 0)]);
        assert_eq!(restarted(&before, &after), vec![("web".to_string(), 5)]);
        assert_eq!(
            lines("deploy@a", &restarted(&before, &after), &[]),
            vec!["deploy@a: PM2 restarted app web's workers 5 time(s) during verification (crash loop?)"]
        );
        // A worker replaced under a new id, or gone, is not compared.
        let after = Counts::of(&[w("web", 7, 9, 9)]);
        assert!(restarted(&before, &after).is_empty());
    }

    #[test]
    fn a_worker_not_online_at_the_end_is_reported_without_restarts() {
        let before = Counts::of(&[
            w("web", 0, 1, 0),
            ws("web", 1, 1, 0, "launching"),
            w("web", 2, 1, 0),
            w("web", 3, 1, 0),
        ]);
        // 0 errored (PM2 gave up), 1 launching for the whole settle, 2 stopped, 3 launching
        // only now (a restart in progress, counted by the restart counts): no restart counted.
        let after = Counts::of(&[
            ws("web", 0, 1, 0, "errored"),
            ws("web", 1, 1, 0, "launching"),
            ws("web", 2, 1, 0, "stopped"),
            ws("web", 3, 1, 0, "launching"),
        ]);
        assert!(restarted(&before, &after).is_empty());
        assert_eq!(
            lines("deploy@a", &[], &down(&before, &after)),
            vec![
                "deploy@a: PM2 app web: worker 0 is errored after the reload",
                "deploy@a: PM2 app web: worker 1 is launching after the reload",
                "deploy@a: PM2 app web: worker 2 is stopped after the reload",
            ]
        );
    }

    #[test]
    fn a_rollback_reads_again_at_once_deploy_and_restart_settle() {
        assert_eq!(wait(Duration::from_millis(200), false), Duration::ZERO);
        assert_eq!(wait(Duration::from_millis(200), true), Duration::from_millis(1300));
        assert_eq!(wait(Duration::from_secs(3), true), Duration::ZERO);
    }

    #[test]
    fn only_this_app_s_workers_are_counted_never_another_app_s() {
        let out = "[{\"name\":\"web\",\"pm_id\":0,\"pm2_env\":{\"status\":\"online\",\"restart_time\":3,\"unstable_restarts\":2,\"pm_cwd\":\"/srv/app/current\"}},\
                   {\"name\":\"other\",\"pm_id\":1,\"pm2_env\":{\"status\":\"errored\",\"restart_time\":9,\"pm_cwd\":\"/srv/other\"}}]\n";
        assert_eq!(
            Counts::parse(out, "/srv/app"),
            Some(Counts(BTreeMap::from([(0, ("web".into(), 3, 2, "online".into()))])))
        );
        // No worker from deploy_dir: no check, rather than blame the other app.
        assert_eq!(Counts::parse(out, "/srv/elsewhere"), None);
        assert_eq!(Counts::parse("pm2 jlist failed\n", "/srv/app"), None);
    }
}
