//! The GitHub Actions runtime files: step outputs (`$GITHUB_OUTPUT`, multi-line safe) and the
//! job summary (`$GITHUB_STEP_SUMMARY`). Workflow commands (groups, masks, annotations) live in
//! `ui.rs` with the rest of the log.

use std::io::Write;

use crate::error::{Context, Result};
use crate::report::Summary;

/// A heredoc delimiter that does not occur in `value`.
fn delimiter(value: &str) -> String {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        ^ u128::from(std::process::id());
    loop {
        let d = format!("ghadelimiter_{seed:x}");
        if !value.contains(&d) {
            return d;
        }
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    }
}

pub fn render_outputs(pairs: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        let d = delimiter(value);
        out.push_str(&format!("{name}<<{d}\n{value}\n{d}\n"));
    }
    out
}

pub(crate) fn append(path: &str, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .context(format!("open {path}"))?;
    f.write_all(text.as_bytes()).context(format!("write {path}"))
}

/// The outputs of DESIGN.md §2 for a finished run.
pub fn outputs(s: &Summary) -> Vec<(&'static str, String)> {
    vec![
        ("status", s.status.as_str().to_string()),
        ("release", s.release.clone().unwrap_or_default()),
        ("backup", s.backup.clone().unwrap_or_default()),
        ("commit", s.commit.clone().unwrap_or_default()),
        ("environment-url", s.environment_url.clone().unwrap_or_default()),
        ("duration-seconds", format!("{:.0}", s.duration_seconds)),
    ]
}

/// Writes outputs and the job summary when the runner asked for them.
pub fn publish(s: &Summary, output_file: Option<&str>, summary_file: Option<&str>) -> Result<()> {
    if let Some(path) = output_file {
        append(path, &render_outputs(&outputs(s)))?;
    }
    if let Some(path) = summary_file {
        append(path, &(s.to_markdown() + "\n"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiline_outputs_use_a_fresh_delimiter() {
        let text = render_outputs(&[("status", "success".into()), ("message", "a\nb".into())]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("status<<ghadelimiter_"));
        assert_eq!(lines[1], "success");
        assert!(lines[3].starts_with("message<<"));
        assert_eq!(&lines[4..6], ["a", "b"]);
    }
}
