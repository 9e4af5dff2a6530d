//! The PM2 ecosystem lint (DESIGN.md §5, §7 "Where checks run"): the ecosystem file is
//! evaluated with `node` — on the host in the new release right after extract, and in `check`
//! where this machine has `node` — and each app is judged against what zero-downtime reloads
//! need. Findings are warnings naming the file, the app and the fix; they never fail a run.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::remote::commands::{self, HookEnv};
use crate::remote::layout::Layout;
use crate::remote::{Mode, Transport};

/// What the drain waits at most before a worker exits (the `drain_timeout` default of §3).
pub const DRAIN_TIMEOUT: Duration = Duration::from_millis(1500);

/// Requires the file given as the first argument (with the caller's environment, TJ_CURRENT
/// included) and prints the fields the lint judges, after a marker so that anything the file
/// itself prints is ignored.
pub const EVAL_JS: &str = r#"const path = require('path');
let m = require(path.resolve(process.argv[1]));
if (m && m.__esModule && m.default) m = m.default;
const apps = Array.isArray(m) ? m : (m && Array.isArray(m.apps)) ? m.apps : (m && m.script) ? [m] : [];
const v = (x) => (x === undefined ? null : x);
const out = apps.map((a) => ({
  name: v(a.name), script: v(a.script),
  args: Array.isArray(a.args) ? a.args.join(' ') : v(a.args),
  exec_mode: v(a.exec_mode !== undefined ? a.exec_mode : a.execMode),
  instances: v(a.instances !== undefined ? a.instances : a.i),
  cwd: v(a.cwd), kill_timeout: v(a.kill_timeout), wait_ready: v(a.wait_ready),
  listen_timeout: v(a.listen_timeout),
}));
process.stdout.write('\nTJ_ECOSYSTEM ' + JSON.stringify(out) + '\n');
"#;

/// One app of the ecosystem file, as the snippet prints it. Numbers may come as strings
/// (`instances: 'max'`), so those stay JSON values.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct App {
    pub name: Option<String>,
    pub script: Option<String>,
    pub args: Option<String>,
    pub exec_mode: Option<String>,
    pub instances: Option<Value>,
    pub cwd: Option<String>,
    pub kill_timeout: Option<Value>,
    pub wait_ready: Option<Value>,
    pub listen_timeout: Option<Value>,
}

/// The apps from the snippet's output, or why there are none.
pub fn parse(stdout: &str) -> Result<Vec<App>, String> {
    let json = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("TJ_ECOSYSTEM "))
        .ok_or_else(|| "it printed no app list".to_string())?;
    serde_json::from_str(json).map_err(|e| format!("unreadable app list ({e})"))
}

/// One word of a shell command: where it stands in the text (quotes included) and its text
/// without the quotes.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub span: std::ops::Range<usize>,
    pub text: String,
}

/// The words of a shell command: split at blanks and at `;`, `&` and `|` outside quotes, so
/// `ecosystem.config.js&&pm2 save` gives `ecosystem.config.js`, `pm2`, `save`.
pub fn words(command: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    let mut quote: Option<char> = None;
    for (i, c) in command.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.get_or_insert_with(|| (i, String::new())).1.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                cur.get_or_insert_with(|| (i, String::new()));
            }
            None if c.is_whitespace() || matches!(c, ';' | '&' | '|') => {
                if let Some((start, text)) = cur.take() {
                    out.push(Word { span: start..i, text });
                }
            }
            None => cur.get_or_insert_with(|| (i, String::new())).1.push(c),
        }
    }
    if let Some((start, text)) = cur {
        out.push(Word {
            span: start..command.len(),
            text,
        });
    }
    out
}

/// How PM2 loads an ecosystem file, by PM2's own rule (`Common.isConfigFile`: the first of these
/// the name contains, in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    /// `.config.js` / `.config.cjs`: `require`d.
    Js,
    /// `.config.mjs`: imported.
    Mjs,
}

impl Format {
    /// Whether `require` (the lint, the drain's wrapper) can load it.
    pub fn loadable(self) -> bool {
        matches!(self, Format::Json | Format::Js)
    }
}

const PM2_CONFIG_EXTENSIONS: [(&str, Format); 6] = [
    (".json", Format::Json),
    (".yml", Format::Yaml),
    (".yaml", Format::Yaml),
    (".config.js", Format::Js),
    (".config.cjs", Format::Js),
    (".config.mjs", Format::Mjs),
];

/// The ecosystem file the reload command names, as PM2 would see one: the first argument (not
/// an option, not a `NAME=value` assignment) containing one of PM2's config extensions.
pub fn config_file(reload: &str) -> Option<(String, Format)> {
    words(reload).into_iter().find_map(|w| {
        let assignment = w
            .text
            .split_once('=')
            .is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if w.text.starts_with('-') || assignment {
            return None;
        }
        let format = PM2_CONFIG_EXTENSIONS
            .iter()
            .find(|(ext, _)| w.text.contains(ext))
            .map(|(_, f)| *f)?;
        Some((w.text, format))
    })
}

/// The ecosystem file the reload command starts (`pm2 startOrReload <file> …`) when `require`
/// can load it (JSON, `.config.js`, `.config.cjs`): the one the lint evaluates and the drain
/// wraps. A YAML or `.mjs` file is [`config_file`]'s alone.
/// The path is relative to the release (`$TJ_CURRENT/` dropped: the reload runs there).
pub fn file_from_reload(reload: &str) -> Option<String> {
    config_file(reload)
        .filter(|(_, f)| f.loadable())
        .map(|(file, _)| in_current(&file).to_string())
}

/// `file` relative to the live release when the command names it through `$TJ_CURRENT`.
pub fn in_current(file: &str) -> &str {
    ["$TJ_CURRENT/", "${TJ_CURRENT}/"]
        .iter()
        .find_map(|p| file.strip_prefix(p))
        .unwrap_or(file)
}

fn number(v: &Option<Value>) -> Option<i64> {
    match v.as_ref()? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn truthy(v: &Option<Value>) -> bool {
    matches!(v, Some(Value::Bool(true)))
}

const PACKAGE_MANAGERS: [&str; 4] = ["npm", "yarn", "pnpm", "npx"];

/// Judges the apps of `file` (evaluated with TJ_CURRENT = `current`).
pub fn warnings(file: &str, current: &str, apps: &[App], drain: Duration) -> Vec<String> {
    let mut out = Vec::new();
    for a in apps {
        let name = a.name.as_deref().unwrap_or("(unnamed)");
        let mut warn = |what: String| out.push(format!("{file}: app '{name}': {what}"));
        let script = a.script.as_deref().unwrap_or("");
        let base = script.rsplit('/').next().unwrap_or(script);
        // PM2's default: cluster when `instances` is given, else fork.
        let cluster = match a.exec_mode.as_deref() {
            Some(m) => m.starts_with("cluster"),
            None => a.instances.is_some(),
        };
        let is_next = base == "next" || script.contains("next/dist/bin/next");
        if cluster && PACKAGE_MANAGERS.contains(&base) {
            warn(format!(
                "script '{script}' in cluster mode makes {base} the worker and the app its stray child, so every reload drops requests; run the app's own entry point (for Next.js: script: 'node_modules/next/dist/bin/next', args: 'start')"
            ));
        }
        if !cluster {
            warn(
                "runs in fork mode: a reload is a restart (downtime); set exec_mode: 'cluster' and instances: 2".into(),
            );
        } else if number(&a.instances) == Some(1) {
            warn("instances: 1 in cluster mode: one worker carries everything while it is replaced; set instances: 2 or more".into());
        }
        match a.cwd.as_deref() {
            None | Some("") => warn(format!(
                "no cwd: PM2 keeps the directory it was first started in (a release), so later reloads run old code; set cwd: process.env.TJ_CURRENT (here {current})"
            )),
            Some(cwd) if cwd != current && !cwd.starts_with(&format!("{current}/")) => warn(format!(
                "cwd '{cwd}' is not under {current}: PM2 keeps that resolved path, so later reloads run old code; set cwd: process.env.TJ_CURRENT"
            )),
            Some(_) => {}
        }
        if let Some(w) = kill_warning(number(&a.kill_timeout), drain) {
            warn(w);
        }
        if truthy(&a.wait_ready) && is_next {
            warn("wait_ready with next start: Next.js never sends 'ready', so every worker waits out listen_timeout and PM2 then reports success whatever happened; remove wait_ready".into());
        }
    }
    out
}

/// PM2's `kill_timeout` when an app sets none.
const PM2_KILL_TIMEOUT_MS: i64 = 1600;

/// PM2 SIGKILLs a worker `kill_timeout` after asking it to stop: at or below `drain_timeout`,
/// the drain is cut short.
fn kill_warning(kill: Option<i64>, drain: Duration) -> Option<String> {
    let d = drain.as_millis() as i64;
    let fix = format!("set kill_timeout to at least {} ms", d + 1000);
    match kill {
        Some(k) if k <= d => Some(format!(
            "kill_timeout {k} ms is not above drain_timeout {d} ms: PM2 kills workers before they drain; {fix}"
        )),
        None if PM2_KILL_TIMEOUT_MS <= d => Some(format!(
            "no kill_timeout: PM2's default of {PM2_KILL_TIMEOUT_MS} ms is not above drain_timeout {d} ms, so PM2 kills workers before they drain; {fix}"
        )),
        _ => None,
    }
}

/// Lints the ecosystem file in the new release on the host. Returns the warnings (one saying
/// why, when the file could not be evaluated there); never an error.
pub async fn lint_host<T: Transport>(
    t: &T,
    l: &Layout,
    reload: Option<&str>,
    env: &HookEnv<'_>,
    drain: Duration,
) -> Vec<String> {
    let Some(file) = reload.and_then(file_from_reload) else {
        return Vec::new();
    };
    let name = t.name();
    let out = match t
        .run(&commands::ecosystem_eval(l, &file, EVAL_JS, env), Mode::Capture)
        .await
    {
        Ok(o) => o,
        Err(e) => return vec![format!("{file}: not checked on {name}: {}", e.message)],
    };
    match out.stdout.trim() {
        "node none" => return vec![format!("{file}: not checked on {name}: no node on the host's PATH")],
        "file none" => return vec![format!("{file}: not checked on {name}: the release has no such file")],
        _ => {}
    }
    if !out.success() {
        return vec![format!(
            "{file}: not checked on {name}: node could not evaluate it before install ({})",
            out.tail()
        )];
    }
    match parse(&out.stdout) {
        Ok(apps) => warnings(&file, &l.current(), &apps, drain),
        Err(e) => vec![format!("{file}: not checked on {name}: {e}")],
    }
}

/// The outcome of the lint in `check`, on this machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Local {
    /// No ecosystem file in the reload command or the package.
    NoFile,
    /// No `node` here: the lint runs at deploy time on the host instead.
    NoNode,
    Failed(String),
    Checked(Vec<String>),
}

/// Lints the ecosystem file of the package dir with the local `node`, TJ_CURRENT set to
/// `current` as the deploy would.
pub fn lint_local(package_dir: &Path, reload: Option<&str>, current: &str, drain: Duration) -> Local {
    let Some(file) = reload.and_then(file_from_reload) else {
        return Local::NoFile;
    };
    if !package_dir.join(&file).is_file() {
        return Local::NoFile;
    }
    let out = std::process::Command::new("node")
        .args(["-e", EVAL_JS, &file])
        .current_dir(package_dir)
        .env("TJ_CURRENT", current)
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Local::NoNode,
        Err(e) => Local::Failed(format!("{file}: node: {e}")),
        Ok(o) if !o.status.success() => Local::Failed(format!(
            "{file}: node could not evaluate it: {}",
            String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("").trim()
        )),
        Ok(o) => match parse(&String::from_utf8_lossy(&o.stdout)) {
            Ok(apps) => Local::Checked(warnings(&file, current, &apps, drain)),
            Err(e) => Local::Failed(format!("{file}: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUR: &str = "/srv/app/current";

    fn app(json: &str) -> App {
        serde_json::from_str(json).unwrap()
    }

    fn lint(json: &str) -> Vec<String> {
        warnings("ecosystem.config.js", CUR, &[app(json)], DRAIN_TIMEOUT)
    }

    #[test]
    fn the_documented_next_cluster_config_is_clean() {
        let w = lint(
            r#"{"name":"tj","script":"node_modules/next/dist/bin/next","args":"start","exec_mode":"cluster","instances":2,"cwd":"/srv/app/current","kill_timeout":5000}"#,
        );
        assert_eq!(w, Vec::<String>::new());
    }

    #[test]
    fn the_runbook_file_gets_the_npm_warning_with_the_fix() {
        let w = lint(
            r#"{"name":"tj","script":"npm","args":"start","exec_mode":"cluster","instances":2,"cwd":"/srv/app/current"}"#,
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("ecosystem.config.js: app 'tj': script 'npm' in cluster mode"),
            "{w:?}"
        );
        assert!(
            w[0].contains("script: 'node_modules/next/dist/bin/next', args: 'start'"),
            "{w:?}"
        );
        for pm in ["yarn", "/usr/bin/pnpm", "npx"] {
            let w = lint(&format!(
                r#"{{"name":"x","script":"{pm}","exec_mode":"cluster_mode","instances":"max","cwd":"{CUR}"}}"#
            ));
            assert_eq!(w.len(), 1, "{pm}: {w:?}");
        }
    }

    #[test]
    fn fork_mode_single_instance_and_cwd() {
        let fork = lint(r#"{"name":"a","script":"server.js","cwd":"/srv/app/current"}"#);
        assert_eq!(fork.len(), 1);
        assert!(fork[0].contains("fork mode: a reload is a restart"), "{fork:?}");
        let explicit =
            lint(r#"{"name":"a","script":"server.js","exec_mode":"fork","instances":4,"cwd":"/srv/app/current"}"#);
        assert!(explicit[0].contains("fork mode"), "{explicit:?}");
        let one = lint(r#"{"name":"a","script":"server.js","instances":1,"cwd":"/srv/app/current/web"}"#);
        assert_eq!(
            one.len(),
            1,
            "implicit cluster (instances given), cwd under current: {one:?}"
        );
        assert!(one[0].contains("instances: 1 in cluster mode"), "{one:?}");
        let no_cwd = lint(r#"{"name":"a","script":"server.js","exec_mode":"cluster","instances":2}"#);
        assert!(no_cwd[0].contains("no cwd") && no_cwd[0].contains(CUR), "{no_cwd:?}");
        let resolved = lint(
            r#"{"name":"a","script":"server.js","exec_mode":"cluster","instances":2,"cwd":"/srv/app/releases/20260101_000000"}"#,
        );
        assert!(resolved[0].contains("is not under /srv/app/current"), "{resolved:?}");
        let sibling =
            lint(r#"{"name":"a","script":"s.js","exec_mode":"cluster","instances":2,"cwd":"/srv/app/current-old"}"#);
        assert_eq!(sibling.len(), 1, "a prefix is not a parent: {sibling:?}");
    }

    #[test]
    fn the_kill_timeout_warning_follows_drain_timeout() {
        let w = |kill: Option<i64>, ms: u64| kill_warning(kill, Duration::from_millis(ms));
        assert!(
            w(Some(3000), 3000)
                .unwrap()
                .contains("kill_timeout 3000 ms is not above drain_timeout 3000 ms")
        );
        assert_eq!(w(Some(3001), 3000), None);
        assert_eq!(w(None, 1500), None, "PM2's default 1600 ms covers the default drain");
        assert!(w(None, 2000).unwrap().contains("PM2's default of 1600 ms"));
        assert!(w(None, 2000).unwrap().contains("at least 3000 ms"));
    }

    #[test]
    fn kill_timeout_and_wait_ready_with_next() {
        let w = lint(
            r#"{"name":"a","script":"server.js","exec_mode":"cluster","instances":2,"cwd":"/srv/app/current","kill_timeout":1500}"#,
        );
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("kill_timeout 1500 ms is not above drain_timeout 1500 ms"),
            "{w:?}"
        );
        assert!(lint(r#"{"name":"a","script":"s.js","exec_mode":"cluster","instances":2,"cwd":"/srv/app/current","kill_timeout":1600}"#).is_empty());
        let w = lint(
            r#"{"name":"a","script":"node_modules/.bin/next","args":"start","exec_mode":"cluster","instances":2,"cwd":"/srv/app/current","wait_ready":true}"#,
        );
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("wait_ready with next start"), "{w:?}");
        assert!(lint(r#"{"name":"a","script":"server.js","exec_mode":"cluster","instances":2,"cwd":"/srv/app/current","wait_ready":true}"#).is_empty());
    }

    #[test]
    fn output_parsing_and_file_names() {
        let apps = parse("noise from the file\nTJ_ECOSYSTEM [{\"name\":\"x\",\"script\":null}]\n").unwrap();
        assert_eq!(apps[0].name.as_deref(), Some("x"));
        assert!(parse("nothing").is_err());
        assert_eq!(
            file_from_reload("pm2 startOrReload ecosystem.config.js --update-env").as_deref(),
            Some("ecosystem.config.js")
        );
        assert_eq!(
            file_from_reload("pm2 reload deploy/pm2.config.cjs").as_deref(),
            Some("deploy/pm2.config.cjs")
        );
        assert_eq!(file_from_reload("pm2 reload all"), None);
    }

    /// PM2's own rule (`Common.isConfigFile`): any argument holding one of its extensions.
    #[test]
    fn the_reload_names_its_file_as_pm2_sees_it() {
        use Format::*;
        let cases: [(&str, Option<(&str, Format)>); 14] = [
            ("pm2 reload process.json", Some(("process.json", Json))),
            ("pm2 startOrReload pm2.json --env production", Some(("pm2.json", Json))),
            ("pm2 reload process.yml", Some(("process.yml", Yaml))),
            (
                "pm2 reload deploy/process.yaml --only web",
                Some(("deploy/process.yaml", Yaml)),
            ),
            (
                "pm2 startOrReload ecosystem.config.mjs",
                Some(("ecosystem.config.mjs", Mjs)),
            ),
            ("pm2 reload pm2.config.cjs", Some(("pm2.config.cjs", Js))),
            (
                "pm2 startOrReload ecosystem.config.js&&pm2 save",
                Some(("ecosystem.config.js", Js)),
            ),
            (
                "pm2 startOrReload ecosystem.config.js;pm2 save",
                Some(("ecosystem.config.js", Js)),
            ),
            (
                "npx pm2 startOrReload ecosystem.config.js --update-env",
                Some(("ecosystem.config.js", Js)),
            ),
            (
                "PM2_HOME=/x pm2 reload ecosystem.config.js",
                Some(("ecosystem.config.js", Js)),
            ),
            (
                "pm2 reload \"$TJ_CURRENT/ecosystem.config.js\"",
                Some(("$TJ_CURRENT/ecosystem.config.js", Js)),
            ),
            ("PM2_HOME=/x.json pm2 reload all --update-env", None),
            ("pm2 reload all", None),
            ("pm2 reload trading-journal-prod", None),
        ];
        for (reload, want) in cases {
            let got = config_file(reload);
            assert_eq!(got.as_ref().map(|(f, k)| (f.as_str(), *k)), want, "{reload}");
        }
        assert_eq!(
            file_from_reload("pm2 reload \"$TJ_CURRENT/ecosystem.config.js\"").as_deref(),
            Some("ecosystem.config.js"),
            "relative to the release, where the lint runs"
        );
        assert_eq!(
            file_from_reload("pm2 reload process.json").as_deref(),
            Some("process.json")
        );
        assert_eq!(
            file_from_reload("pm2 reload process.yml"),
            None,
            "require cannot load it"
        );
        assert_eq!(file_from_reload("pm2 reload ecosystem.config.mjs"), None);
    }

    #[test]
    fn words_split_at_operators_outside_quotes() {
        let w: Vec<String> = words("a 'b c'&&d;\"e;f\"|g").into_iter().map(|w| w.text).collect();
        assert_eq!(w, ["a", "b c", "d", "e;f", "g"]);
        assert_eq!(words("x \"y\" z")[1].span, 2..5);
    }

    /// A real file evaluated by node: the lint sees what PM2 would (TJ_CURRENT applied).
    #[test]
    fn evaluates_a_real_file_with_node() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ecosystem.config.js"),
            "console.log('loading');\nmodule.exports = { apps: [\n  { name: 'web', script: 'npm', args: ['start'], exec_mode: 'cluster', instances: 2, cwd: process.env.TJ_CURRENT },\n  { name: 'worker', script: 'worker.js', cwd: __dirname },\n] };\n",
        )
        .unwrap();
        let reload = Some("pm2 startOrReload ecosystem.config.js --update-env");
        let Local::Checked(w) = lint_local(dir.path(), reload, CUR, DRAIN_TIMEOUT) else {
            panic!("node must be installed for this test");
        };
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("app 'web': script 'npm' in cluster mode"), "{w:?}");
        assert!(w[1].contains("app 'worker': runs in fork mode"), "{w:?}");
        assert!(w[2].contains("app 'worker': cwd '"), "{w:?}");
        assert_eq!(
            lint_local(dir.path(), Some("pm2 reload all"), CUR, DRAIN_TIMEOUT),
            Local::NoFile
        );
        std::fs::write(dir.path().join("ecosystem.config.js"), "module.exports = {{;\n").unwrap();
        assert!(matches!(
            lint_local(dir.path(), reload, CUR, DRAIN_TIMEOUT),
            Local::Failed(_)
        ));
    }
}
