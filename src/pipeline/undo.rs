//! Taking back what a failed run did, on every host it touched, side by side: a switched host
//! goes back to the release that was live before (switch, reload, verify — not cancelled), a
//! prepared one loses the release this run made. The result names what each host is live on.

use serde_json::json;

use crate::config::ReleaseId;
use crate::error::Error;
use crate::pipeline::activate::{Why, activate};
use crate::pipeline::{Ctx, HostRun, Progress};
use crate::remote::{Mode, Transport, commands};

/// What undo did on one host: a note for the message, or why it could not.
type HostUndo = std::result::Result<String, String>;

/// Undoes a failed deploy of release `id`. `Ok` says what each host now serves; `Err` says the
/// same with the hosts where undo itself failed marked. `drop_backup`: the run's backups hold
/// nothing that is not live (no host switched, no migration ran) and are removed too, so the
/// hosts end as they were.
pub async fn deploy<T: Transport>(
    ctx: &Ctx<'_>,
    hosts: &mut [HostRun<T>],
    id: ReleaseId,
    cause: &Error,
    drop_backup: bool,
) -> std::result::Result<String, String> {
    let fleet = hosts.len() > 1;
    let undo_one = |h| deploy_host(ctx, h, id, cause, fleet, drop_backup);
    let results = futures_util::future::join_all(hosts.iter_mut().map(undo_one)).await;
    collect(results)
}

async fn deploy_host<T: Transport>(
    ctx: &Ctx<'_>,
    h: &mut HostRun<T>,
    id: ReleaseId,
    cause: &Error,
    fleet: bool,
    drop_backup: bool,
) -> Option<HostUndo> {
    let name = h.name();
    let live = h
        .previous()
        .map(|p| p.id.to_string())
        .unwrap_or_else(|| "no release".into());
    match h.progress {
        Progress::Switched => {
            let why = json!({
                "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "by": ctx.inv.actor,
                "reason": cause.message,
            });
            let _ = h
                .exec(
                    &commands::mark_bad(&ctx.layout, id, &why.to_string()),
                    Mode::Capture,
                    "mark bad",
                )
                .await;
            Some(
                back_to_previous(ctx, h)
                    .await
                    .map(|note| format!("{note}; {id} is marked BAD_RELEASE")),
            )
        }
        Progress::Prepared => {
            let backups = if drop_backup { vec![id] } else { Vec::new() };
            let script = commands::remove(&ctx.layout, &[id], &backups);
            let removed = ctx
                .steps
                .run_uncancelled(
                    &name,
                    "cleanup",
                    &ctx.layout.release(id),
                    h.exec(&script, Mode::Capture, "remove unfinished release"),
                )
                .await;
            Some(match removed {
                Ok(_) if fleet => Ok(format!("{name}: unfinished release {id} removed, still on {live}")),
                Ok(_) => Ok(format!("{name}: unfinished release {id} removed, current unchanged")),
                Err(e) => Err(e.message),
            })
        }
        Progress::Locked if fleet => Some(Ok(format!("{name}: untouched, still on {live}"))),
        Progress::Locked | Progress::Untouched => None,
    }
}

/// Switches a host back to the release that was live when the run inspected it.
pub async fn back_to_previous<T: Transport>(ctx: &Ctx<'_>, h: &mut HostRun<T>) -> HostUndo {
    let name = h.name();
    let Some(prev) = h.previous().cloned() else {
        return Err(format!(
            "{name}: no previous release to go back to; the new one stays current"
        ));
    };
    let rev = prev.revision.clone().unwrap_or_default();
    match activate(ctx, h, prev.id, &rev, Why::Undo).await {
        Ok(_) => Ok(format!(
            "{name}: rolled back, release {} (commit {}) is serving again",
            prev.id,
            crate::ui::prefix(&rev, 7)
        )),
        Err(e) => Err(e.message),
    }
}

/// Joins per-host results: every note when all succeeded, else every failure.
/// Joins per-host results: every host's note, the failed ones marked, so a message always says
/// what each host is live on. `Err` when undo failed anywhere.
pub fn collect(results: Vec<Option<HostUndo>>) -> std::result::Result<String, String> {
    let results: Vec<HostUndo> = results.into_iter().flatten().collect();
    let failed = results.iter().any(|r| r.is_err());
    let notes: Vec<String> = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| format!("FAILED: {e}")))
        .collect();
    match (failed, notes.is_empty()) {
        (false, true) => Ok("Nothing was changed on the hosts.".to_string()),
        (false, false) => Ok(notes.join("; ") + "."),
        (true, _) => Err(notes.join("; ") + "."),
    }
}
