//! The server's own record: deployments.log (one JSON line per run) and deployments.md.

use super::*;
use crate::remote::layout::Layout;

/// Appends one JSON line to the deployment log.
pub fn append_log(l: &Layout, json_line: &str) -> Script {
    with_dirs("log", l)
        .var("LINE", json_line)
        .line("mkdir -p \"$D/.tj-deploy\"")
        .line("printf '%s\\n' \"$LINE\" >> \"$D/.tj-deploy/deployments.log\"")
}

/// Puts a run's markdown summary at the top of deployments.md, keeping at most `keep` bytes.
pub fn prepend_markdown(l: &Layout, markdown: &str, keep: usize) -> Script {
    with_dirs("log", l)
        .var("MD", markdown)
        .var("KEEP", &keep.to_string())
        .line("mkdir -p \"$D/.tj-deploy\"")
        .line("F=\"$D/.tj-deploy/deployments.md\"; T=\"$F.$$.tmp\"")
        .line("{ printf '%s\\n\\n---\\n\\n' \"$MD\"; if [ -f \"$F\" ]; then cat \"$F\"; fi; } | head -c \"$KEEP\" > \"$T\"")
        .line("mv -f \"$T\" \"$F\"")
}
