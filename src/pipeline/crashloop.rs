//! Crash loops seen at verify: a PM2 app whose workers keep restarting (the runbook's
//! `script: 'npm'` in cluster mode, each `next start` child fighting over the port) still
//! passes its health checks whenever one worker answers. The app's workers' `restart_time`
//! (and `unstable_restarts`) are read right after the reload — which itself counts one
//! restart per worker — and again once verification ended, at least [`SETTLE`] later;
//! restarts in between are a warning in every summary, and a failure of a deploy with
//! `availability = "enforce"` (which then rolls back).

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

/// Each worker's (app, restarts, unstable restarts) per `pm_id`, read at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts(BTreeMap<i64, (String, i64, i64)>);

impl Counts {
    pub fn of(workers: &[Worker]) -> Counts {
        Counts(
            workers
                .iter()
                .map(|w| (w.id, (w.name.clone(), w.restarts, w.unstable)))
                .collect(),
        )
    }
}

/// The app's workers' counts on the host; `None` when PM2 gave no list (nothing to compare).
pub async fn read<T: Transport>(ctx: &Ctx<'_>, h: &HostRun<T>) -> Option<Counts> {
    let out = h.t.run(&commands::pm2_list(&ctx.layout), Mode::Capture).await.ok()?;
    let workers = sample::workers(&out.stdout, ctx.layout.deploy_dir.as_str())?;
    Some(Counts::of(&workers))
}

/// Restarts per app between two readings, counted over the workers present in both (a worker
/// PM2 replaced under a new id is not compared). A worker's restarts are the larger of its
/// `restart_time` and `unstable_restarts` increases: PM2 counts an early restart in both.
pub fn restarted(before: &Counts, after: &Counts) -> Vec<(String, i64)> {
    let mut apps: BTreeMap<String, i64> = BTreeMap::new();
    for (id, (name, restarts, unstable)) in &after.0 {
        let Some((_, r0, u0)) = before.0.get(id) else {
            continue;
        };
        let n = (restarts - r0).max(unstable - u0);
        if n > 0 {
            *apps.entry(name.clone()).or_default() += n;
        }
    }
    apps.into_iter().collect()
}

/// The warning lines for `host`, one per app that restarted.
pub fn lines(host: &str, restarts: &[(String, i64)]) -> Vec<String> {
    restarts
        .iter()
        .map(|(app, n)| {
            format!("{host}: PM2 restarted app {app}'s workers {n} time(s) during verification (crash loop?)")
        })
        .collect()
}

/// Once verification ended: waits until [`SETTLE`] after `since`, reads the counts again and
/// returns what restarted (each line also a `::warning::` now).
pub async fn after<T: Transport>(ctx: &Ctx<'_>, h: &HostRun<T>, before: &Counts, since: Instant) -> Vec<String> {
    tokio::time::sleep(SETTLE.saturating_sub(since.elapsed())).await;
    let Some(now) = read(ctx, h).await else {
        return Vec::new();
    };
    let found = lines(&h.name(), &restarted(before, &now));
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
        Worker {
            name: name.into(),
            id,
            status: "online".into(),
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
        // Worker 0 restarted 3 times, worker 1 twice (counted as unstable only), jobs quiet.
        let after = Counts::of(&[w("web", 0, 4, 3), w("web", 1, 1, 2), w("jobs", 2, 4, 0)]);
        assert_eq!(restarted(&before, &after), vec![("web".to_string(), 5)]);
        assert_eq!(
            lines("deploy@a", &restarted(&before, &after)),
            vec!["deploy@a: PM2 restarted app web's workers 5 time(s) during verification (crash loop?)"]
        );
        // A worker replaced under a new id, or gone, is not compared.
        let after = Counts::of(&[w("web", 7, 9, 9)]);
        assert!(restarted(&before, &after).is_empty());
    }

    #[test]
    fn the_counts_come_from_the_cut_pm2_list() {
        let out = "[{\"name\":\"web\",\"pm_id\":0,\"pm2_env\":{\"status\":\"online\",\"restart_time\":3,\"unstable_restarts\":2,\"pm_cwd\":\"/srv/app/current\"}}]\n";
        let workers = sample::workers(out, "/srv/app").unwrap();
        assert_eq!(
            Counts::of(&workers),
            Counts(BTreeMap::from([(0, ("web".into(), 3, 2))]))
        );
    }
}
