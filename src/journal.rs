//! The server's own record of every run: one JSON line per attempt in
//! `.tj-deploy/deployments.log`, and the run's markdown summary at the top of
//! `.tj-deploy/deployments.md` (newest first). Failing to write them is a warning.

use serde_json::Value;

use crate::remote::layout::Layout;
use crate::remote::{Mode, Transport, commands};
use crate::ui;

/// deployments.md is cut to this size so it never grows without bound.
pub const MARKDOWN_KEEP_BYTES: usize = 1 << 20;

/// One line of deployments.log for `host`: the run's common fields from its summary, then
/// the command's own `fields` (release, previous, backup, …).
pub fn line(summary: &crate::report::Summary, id: &str, host: &str, fields: Value) -> Value {
    let mut line = serde_json::json!({
        "kind": summary.command,
        "id": id,
        "environment": summary.environment,
        "host": host,
        "commit": summary.commit,
        "status": summary.status.as_str(),
        "actor": summary.actor,
        "run_url": summary.run_url,
        "started_at": summary.started_at,
        "finished_at": summary.finished_at,
        "message": summary.message,
    });
    if let (Some(obj), Value::Object(extra)) = (line.as_object_mut(), fields) {
        obj.extend(extra);
    }
    line
}

pub async fn record<T: Transport>(t: &T, l: &Layout, line: &Value, markdown: &str) {
    append(t, l, line).await;
    let md = commands::prepend_markdown(l, &crate::github::report::fit_summary(markdown), MARKDOWN_KEEP_BYTES);
    if let Err(e) = t.run(&md, Mode::Capture).await.and_then(|o| o.check("log")) {
        ui::warn(&format!(
            "{}: could not write {}/deployments.md: {e}",
            t.name(),
            l.meta()
        ));
    }
}

/// Appends one JSON line to deployments.log (no markdown: `unlock`).
pub async fn append<T: Transport>(t: &T, l: &Layout, line: &Value) {
    let log = commands::append_log(l, &line.to_string());
    if let Err(e) = t.run(&log, Mode::Capture).await.and_then(|o| o.check("log")) {
        ui::warn(&format!("{}: could not append to {}: {e}", t.name(), l.log()));
    }
}
