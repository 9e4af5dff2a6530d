//! Retention after every run that got past the lock, successful or not (DESIGN.md §4):
//! `keep_releases` good releases, `keep_backups` backups and always the newest good one; never
//! `current`. Each host is read afresh, so what undo left is what is pruned.

use crate::config::ReleaseId;
use crate::pipeline::{Ctx, HostRun, Progress};
use crate::plan::StepKind;
use crate::remote::{Mode, Transport, commands};
use crate::ui;

/// Prunes every host this run locked; `keep` is the release it made live. Failures are warnings.
pub async fn after_run<T: Transport>(ctx: &Ctx<'_>, hosts: &[HostRun<T>], keep: Option<ReleaseId>) {
    let env = &ctx.config.env;
    for h in hosts.iter().filter(|h| h.progress > Progress::Untouched) {
        let name = h.name();
        let state = match crate::state::inspect(&h.t, &ctx.layout, None).await {
            Ok(s) => s,
            Err(e) => {
                ui::warn(&format!("{name}: not pruned: {e}"));
                continue;
            }
        };
        let (releases, backups) = state.prune_plan(env.keep_releases, env.keep_backups, keep);
        if releases.is_empty() && backups.is_empty() {
            ctx.steps.skipped(&name, StepKind::Prune.name(), "nothing to prune");
        } else {
            let detail = format!("{} release(s), {} backup(s)", releases.len(), backups.len());
            let script = commands::remove(&ctx.layout, &releases, &backups);
            let run = h.exec(&script, Mode::Capture, "prune");
            if let Err(e) = ctx
                .steps
                .run_uncancelled(&name, StepKind::Prune.name(), &detail, run)
                .await
            {
                ui::warn(&format!("{e} (pruning only; the run's result stands)"));
            }
        }
        // Stored dependencies go once no release and no backup names them.
        if let Err(e) = crate::deps::prune(&h.t, &ctx.layout).await {
            ui::warn(&format!("{e} (pruning only; the run's result stands)"));
        }
    }
}
