//! The PM2 ecosystem file: the one `init` writes (cluster mode, the app's own entry file as
//! `script`, `cwd` from `TJ_CURRENT`) and a static check of one that already exists.
//!
//! [`ecosystem_warnings`] reads the file as text and evaluates nothing; the ecosystem lint of the
//! real-stack work (evaluated with `node`, DESIGN.md §7) supersedes it where it is available.

/// What `script` (and `args`) the generated file runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub script: String,
    pub args: Option<String>,
    /// Why this script: shown in the file and in init's output.
    pub note: String,
}

/// The generated `ecosystem.config.js`.
pub fn render(app: &str, entry: &Entry) -> String {
    let args = entry
        .args
        .as_ref()
        .map(|a| format!("      args: '{}',\n", js_escape(a)))
        .unwrap_or_default();
    include_str!("ecosystem.config.js.tmpl")
        .replace("{{app}}", &js_escape(app))
        .replace("{{script}}", &js_escape(&entry.script))
        .replace("{{script_note}}", &format!(" // {}", entry.note))
        .replace("{{args}}", &args)
}

fn js_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

/// Warnings about an existing ecosystem file, from its text alone (comments ignored). It cannot
/// see values computed at run time, nor tell several apps apart: a static first look.
pub fn ecosystem_warnings(text: &str) -> Vec<String> {
    let code = strip_comments(text);
    let scripts = string_values(&code, "script");
    let modes = string_values(&code, "exec_mode");
    let instances = raw_values(&code, "instances");
    let cluster = modes.iter().any(|m| m.starts_with("cluster"));
    let mut warnings = Vec::new();
    for s in &scripts {
        let program = s.rsplit('/').next().unwrap_or(s);
        if cluster && ["npm", "yarn", "pnpm", "npx"].contains(&program) {
            warnings.push(format!(
                "script: '{s}' in cluster mode: PM2 require()s the script in each worker, so {program} becomes \
                 the worker and the app a stray child, and every reload drops requests; use the app's own \
                 entry file (Next.js: script: 'node_modules/next/dist/bin/next', args: 'start')"
            ));
        }
    }
    if modes.iter().any(|m| m.starts_with("fork")) {
        warnings
            .push("exec_mode: 'fork' reloads by restarting the process (downtime); use exec_mode: 'cluster'".into());
    }
    if instances.iter().any(|i| i == "1") {
        warnings
            .push("instances: 1 leaves no worker serving while the only one reloads; use instances: 2 or more".into());
    }
    if scripts.is_empty() {
        warnings.push("no `script: '...'` found: cannot tell what PM2 runs".into());
    }
    if !code.contains("cwd") {
        warnings.push(
            "no cwd: PM2 remembers the resolved release directory it was started in; \
             set cwd: process.env.TJ_CURRENT (the <deploy_dir>/current symlink)"
                .into(),
        );
    }
    warnings
}

/// The text with `//` and `/* */` comments blanked, string literals kept.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == '\\' {
                    out.extend(chars.next());
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '/' && chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            None if c == '/' && chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                out.push(' ');
            }
            None => {
                if matches!(c, '\'' | '"' | '`') {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

/// The text after each `key:` (the key as a whole word, bare or quoted), up to `,` `}` or a
/// line end, trimmed.
fn raw_values(code: &str, key: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(pos) = code[from..].find(key) {
        let start = from + pos;
        from = start + key.len();
        let before = code[..start].chars().next_back();
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == '_' || b == '.' || b == '$') {
            continue;
        }
        let rest = code[from..].trim_start_matches(['\'', '"']).trim_start();
        let Some(value) = rest.strip_prefix(':') else {
            continue;
        };
        let end = value.find([',', '}', '\n']).unwrap_or(value.len());
        found.push(value[..end].trim().to_string());
    }
    found
}

/// The string literal values of `key` (`key: 'x'`); computed values are skipped.
fn string_values(code: &str, key: &str) -> Vec<String> {
    raw_values(code, key)
        .into_iter()
        .filter_map(|v| {
            let q = v.chars().next().filter(|c| matches!(c, '\'' | '"' | '`'))?;
            let inner = v.strip_prefix(q)?.strip_suffix(q)?;
            Some(inner.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNBOOK: &str = r#"
module.exports = {
  apps: [{
    name: 'trading-journal',
    script: 'npm',          // the runbook's own file
    args: 'start',
    cwd: '/var/www/tj/current',
    exec_mode: "cluster",
    instances: 1,
  }],
};
"#;

    #[test]
    fn the_runbook_file_gets_its_warnings() {
        let w = ecosystem_warnings(RUNBOOK);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("script: 'npm' in cluster mode"), "{w:?}");
        assert!(w[1].starts_with("instances: 1"), "{w:?}");
    }

    #[test]
    fn fork_mode_and_missing_cwd() {
        let w = ecosystem_warnings("module.exports = { apps: [{ script: 'server.js', 'exec_mode': 'fork' }] }");
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("exec_mode: 'fork'"), "{w:?}");
        assert!(w[1].starts_with("no cwd"), "{w:?}");
    }

    #[test]
    fn npm_in_fork_mode_is_not_the_cluster_warning_and_comments_do_not_count() {
        let text = "// script: 'npm', exec_mode: 'cluster'\n/* instances: 1 */\n\
                    module.exports = { apps: [{ script: 'npm', cwd: x, exec_mode: 'fork_mode', \
                    instances: 2, url: 'http://a/b' }] }";
        let w = ecosystem_warnings(text);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("exec_mode"), "{w:?}");
    }

    #[test]
    fn the_generated_files_are_clean() {
        let next = Entry {
            script: "node_modules/next/dist/bin/next".into(),
            args: Some("start".into()),
            note: "Next.js".into(),
        };
        let text = render("shop", &next);
        assert_eq!(ecosystem_warnings(&text), Vec::<String>::new());
        assert!(text.contains("script: 'node_modules/next/dist/bin/next', // Next.js\n      args: 'start',\n"));
        assert!(text.contains("const current = process.env.TJ_CURRENT"));
        let plain = Entry {
            script: "dist/it's.js".into(),
            args: None,
            note: "the start script".into(),
        };
        let text = render("api", &plain);
        assert_eq!(ecosystem_warnings(&text), Vec::<String>::new());
        assert!(text.contains(r"script: 'dist/it\'s.js',"), "{text}");
        assert!(!text.contains("args:"));
        assert!(!text.contains("{{"));
    }

    #[test]
    fn the_sample_apps_file_is_clean() {
        let text = include_str!("../../examples/trading-journal/ecosystem.config.js");
        assert_eq!(ecosystem_warnings(text), Vec::<String>::new());
    }
}
