//! The reload with the keep-alive drain wired in (src/drain/): writes the preload and the
//! ecosystem wrapper to `<deploy_dir>/.tj-deploy/`, then runs the configured reload command
//! on the wrapper instead of the app's ecosystem file, so PM2 preloads the drain into every
//! new worker and hands them `drain_timeout` in the app's `env` (PM2 does not pass the reload's
//! own environment to reloaded workers, `--update-env` or not: measured). A reload command that
//! names no ecosystem file (`pm2 reload all`) gets the preload through `NODE_OPTIONS` instead,
//! which reaches only the workers PM2 starts from this environment (a first start, fork mode);
//! the run warns about it ([`crate::drain::fallback_warning`]).

use std::time::Duration;

use super::{HookEnv, Script, hook_exports, quote, with_dirs};
use crate::drain::{DRAIN_JS, WRAP_JS};
use crate::remote::layout::Layout;

/// `reload`'s script with the drain: `drain_timeout` reaches the workers as
/// `TJ_DRAIN_TIMEOUT_MS`.
pub fn reload_drained(l: &Layout, command: &str, env: &HookEnv, timeout: Duration) -> Script {
    // The word as written (replaced by the wrapper) and the path the wrapper loads.
    let named = crate::ecosystem::config_file(command).filter(|(_, f)| f.loadable());
    let wrapper = format!("{}/drain.config.js", l.meta());
    let cmd = match &named {
        Some((word, _)) => on_wrapper(command, word, &wrapper),
        None => command.to_string(),
    };
    let file = named.map(|(word, _)| crate::ecosystem::in_current(&word).to_string());
    let s = hook_exports(with_dirs("reload", l), l, env)
        .var("CMD", &cmd)
        .var("DRAIN_JS", DRAIN_JS)
        .var("WRAP_JS", WRAP_JS)
        .var("TJ_DRAIN_TIMEOUT_MS", &timeout.as_millis().to_string())
        .line("M=\"$D/.tj-deploy\"")
        .line("mkdir -p \"$M\"")
        // Written whole then renamed: a worker starting meanwhile never reads half a file.
        .line("printf '%s\\n' \"$DRAIN_JS\" > \"$M/.drain.js.tmp\" && mv -f \"$M/.drain.js.tmp\" \"$M/drain.js\"")
        .line("printf '%s\\n' \"$WRAP_JS\" > \"$M/.drain.config.js.tmp\" && mv -f \"$M/.drain.config.js.tmp\" \"$M/drain.config.js\"")
        .line("export TJ_DRAIN_TIMEOUT_MS");
    let s = match &file {
        Some(f) => s.var("TJ_DRAIN_ECOSYSTEM", f).line("export TJ_DRAIN_ECOSYSTEM"),
        // NODE_OPTIONS quotes with `"`: a path holding one (or `\`) would break every node.
        None => s.line(
            "case \"$M\" in *'\"'*|*'\\'*) echo 'drain: not wired (deploy_dir holds a quote or backslash)' >&2 ;; \
             *) NODE_OPTIONS=\"${NODE_OPTIONS:+$NODE_OPTIONS }--require \\\"$M/drain.js\\\"\"; export NODE_OPTIONS ;; esac",
        ),
    };
    s.line("cd \"$TJ_CURRENT\"").line("exec sh -ec \"$CMD\"")
}

/// The reload command with its ecosystem file word (`file`, unquoted) replaced by the
/// wrapper's quoted path, whatever quotes or `&&`/`;` surround it.
fn on_wrapper(command: &str, file: &str, wrapper: &str) -> String {
    match crate::ecosystem::words(command).into_iter().find(|w| w.text == file) {
        Some(w) => format!(
            "{}{}{}",
            &command[..w.span.start],
            quote(wrapper),
            &command[w.span.end..]
        ),
        None => command.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ReleaseId, RemotePath};

    fn layout(d: &str) -> Layout {
        Layout::new(
            RemotePath::parse("d", d).unwrap(),
            RemotePath::parse("b", "/srv/backups").unwrap(),
        )
    }

    #[test]
    fn the_reload_runs_on_the_wrapper() {
        assert_eq!(
            on_wrapper(
                "pm2 startOrReload 'ecosystem.config.js' --update-env && pm2 save",
                "ecosystem.config.js",
                "/srv/a b/.tj-deploy/drain.config.js"
            ),
            "pm2 startOrReload '/srv/a b/.tj-deploy/drain.config.js' --update-env && pm2 save"
        );
        let w = "/srv/a b/.tj-deploy/drain.config.js";
        assert_eq!(
            on_wrapper(
                "pm2 startOrReload ecosystem.config.js&&pm2 save",
                "ecosystem.config.js",
                w
            ),
            "pm2 startOrReload '/srv/a b/.tj-deploy/drain.config.js'&&pm2 save"
        );
        assert_eq!(
            on_wrapper(
                "pm2 reload \"$TJ_CURRENT/ecosystem.config.js\";pm2 save",
                "$TJ_CURRENT/ecosystem.config.js",
                w
            ),
            "pm2 reload '/srv/a b/.tj-deploy/drain.config.js';pm2 save"
        );
    }

    /// Runs `reload` through [`reload_drained`] for real, `current` holding `file` with `text`,
    /// and a fake `pm2` that prints the apps of the file it is given (its second argument).
    fn run_wrapped(file: &str, text: &str, reload: &str) -> (serde_json::Value, String) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("app dir");
        let cur = d.join("current");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&cur).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(cur.join(file), text).unwrap();
        let fake = "#!/bin/sh\nnode -e 'const m = require(require(\"path\").resolve(process.argv[1])); console.log(JSON.stringify(m.apps))' \"$2\"\n";
        std::fs::write(bin.join("pm2"), fake).unwrap();
        sh(&format!("chmod +x {}", quote(&bin.join("pm2").display().to_string())));
        let s = reload_drained(
            &layout(d.to_str().unwrap()),
            reload,
            &env(),
            Duration::from_millis(2500),
        );
        let out = std::process::Command::new("sh")
            .args(["-c", s.text()])
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let drain = format!("{}/.tj-deploy/drain.js", d.display());
        assert_eq!(std::fs::read_to_string(&drain).unwrap().trim_end(), DRAIN_JS.trim_end());
        (serde_json::from_slice(&out.stdout).unwrap(), drain)
    }

    /// The app gets the preload appended to its own node_args and the timeout in its env.
    #[test]
    fn the_wrapper_adds_the_preload_to_the_apps_own_node_args() {
        let (apps, drain) = run_wrapped(
            "ecosystem.config.js",
            "module.exports = { apps: [{ name: 'a', script: 's.js', node_args: '--max-old-space-size=64', env: { X: '1' } }, { name: 'py', script: 'x.py', interpreter: 'python3' }] };",
            "pm2 startOrReload ecosystem.config.js --update-env",
        );
        assert_eq!(
            apps[0]["node_args"],
            serde_json::json!(["--max-old-space-size=64", "--require", drain])
        );
        assert_eq!(
            apps[0]["env"],
            serde_json::json!({"X": "1", "TJ_DRAIN_TIMEOUT_MS": "2500"})
        );
        assert!(apps[1].get("node_args").is_none(), "not a Node app: {apps}");
    }

    /// A `.json` file read as PM2 reads it (a JavaScript expression: unquoted keys, comments),
    /// named without spaces before `&&` or through `$TJ_CURRENT`.
    #[test]
    fn the_wrapper_loads_json_and_files_named_through_tj_current() {
        let json = "// PM2 accepts this\n{ apps: [{ name: 'a', script: 's.js' }] }\n";
        for reload in [
            "pm2 startOrReload process.json --env production&&true",
            "pm2 reload \"$TJ_CURRENT/process.json\";true",
        ] {
            let (apps, drain) = run_wrapped("process.json", json, reload);
            assert_eq!(
                apps[0]["node_args"],
                serde_json::json!(["--require", drain]),
                "{reload}"
            );
        }
    }

    #[test]
    fn without_an_ecosystem_file_node_options_carry_the_preload() {
        let run = |d: &str| {
            let s = reload_drained(
                &layout(d),
                "printf '%s' \"$NODE_OPTIONS\"",
                &env(),
                Duration::from_secs(1),
            );
            let dir = tempfile::tempdir().unwrap();
            let text = s.text().replace(d, &format!("{}{d}", dir.path().display()));
            std::fs::create_dir_all(format!("{}{d}/current", dir.path().display())).unwrap();
            let out = std::process::Command::new("sh")
                .args(["-c", &text])
                .env("NODE_OPTIONS", "--enable-source-maps")
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            (
                dir.path().display().to_string(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        };
        let (root, opts) = run("/srv/a b");
        assert_eq!(
            opts,
            format!("--enable-source-maps --require \"{root}/srv/a b/.tj-deploy/drain.js\"")
        );
        assert_eq!(
            run("/srv/a\"b").1,
            "--enable-source-maps",
            "not wired rather than broken"
        );
    }

    fn env() -> HookEnv<'static> {
        HookEnv {
            environment: "staging",
            release: ReleaseId::parse("id", "20260118_143000").unwrap(),
            revision: "abc",
        }
    }

    fn sh(c: &str) {
        assert!(
            std::process::Command::new("sh")
                .args(["-c", c])
                .status()
                .unwrap()
                .success()
        );
    }
}
