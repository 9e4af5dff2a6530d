//! Availability during activation (issue #12 item 4): every host's health URL is probed from
//! just before the first switch until the last verification ends. A failed probe is a warning;
//! with `availability = "enforce"` it fails the run, which then rolls back like any failure.

use crate::availability::{Probe, Report, client};
use crate::error::{Error, Result};
use crate::pipeline::{Ctx, HostRun};
use crate::ui;

/// Starts probing each host's health URL (each once).
pub fn watch<T>(ctx: &Ctx<'_>, hosts: &[HostRun<T>]) -> Result<Probe> {
    let mut urls: Vec<String> = Vec::new();
    for h in hosts {
        let url = crate::health::url_for(&ctx.config.env.health_url, &h.spec);
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    Ok(Probe::start(&urls, &client()?))
}

/// Stops the probes and decides: the activation's own result, or — for a deploy (`enforce`),
/// when `availability = "enforce"` — a failure when a probe failed. A rollback only reports:
/// undoing it would put back the release being rolled away from.
pub async fn judge(ctx: &Ctx<'_>, probe: Probe, activated: Result<()>, deploy: bool) -> (Report, Result<()>) {
    let report = probe.stop().await;
    ui::info(&report.to_string());
    if report.failed == 0 {
        return (report, activated);
    }
    ui::warn(&format!(
        "{report}: requests failed while the release changed (see the ecosystem warnings, if any)"
    ));
    match activated {
        Ok(()) if deploy && ctx.config.env.availability_enforce => (
            report,
            Err(Error::failed(format!("{report} (availability = \"enforce\")"))),
        ),
        other => (report, other),
    }
}
