//! One validated configuration per run, built once from CLI flags, action inputs, the GitHub
//! context and `tj-deploy.toml` (precedence: flag > input > file > default). Every check of
//! user input happens here, with errors that name the input; later stages trust these values.

mod env;
pub mod file;
pub mod inputs;
mod ops;
pub mod timeouts;
pub mod values;
pub mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
pub use inputs::{ActionInputs, GithubContext, PullRequest, Secret};
pub use ops::OpsFlags;
pub use timeouts::Timeouts;
pub use values::{EnvName, HostSpec, ReleaseId, RemotePath, Sha, SmokeCheck};

/// What the command line said, before inputs and the file are consulted.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub command: Option<String>,
    pub environment: Option<String>,
    pub config: Option<PathBuf>,
    pub sha: Option<String>,
    pub dry_run: bool,
    pub ssh_key_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    pub to: Option<String>,
    pub restore_database: bool,
    pub confirm: Option<String>,
    pub json: bool,
    /// Also post to Slack when a deploy starts (input `slack-on-start`, or `TJ_SLACK_ON_START`).
    pub slack_on_start: bool,
    pub allow_destructive_migrations: bool,
    /// `--watch DURATION`: the post-deploy watch's duration for this run (`0s` skips it).
    pub watch: Option<String>,
    /// The day-two commands' own flags.
    pub ops: OpsFlags,
}

/// Which backup a rollback restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackTarget {
    /// The newest backup whose release is not marked bad and is not the current one.
    Latest,
    Id(ReleaseId),
}

impl RollbackTarget {
    pub fn parse(input: &str, s: &str) -> Result<Self> {
        match s {
            "latest" => Ok(RollbackTarget::Latest),
            "" => Err(Error::invalid(format!(
                "{input}: empty (give a backup id like 20260118_143000, or latest)"
            ))),
            id => ReleaseId::parse(input, id).map(RollbackTarget::Id),
        }
    }
}

/// Where the SSH client's secrets come from.
#[derive(Debug, Clone, Default)]
pub struct SshSecrets {
    /// Private key text (input `ssh-key` or `TJ_SSH_KEY`); written 0600 to a private temp dir.
    pub key: Option<Secret>,
    pub key_file: Option<PathBuf>,
    /// known_hosts text (input `known-hosts` or `TJ_KNOWN_HOSTS`).
    pub known_hosts: Option<String>,
    pub known_hosts_file: Option<PathBuf>,
}

/// The run's parameters other than the file: which command, environment, commit and secrets.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub command: String,
    pub environment: EnvName,
    pub config_path: PathBuf,
    pub sha: Option<Sha>,
    pub dry_run: bool,
    pub ssh: SshSecrets,
    pub github_token: Option<Secret>,
    pub slack_webhook: Option<Secret>,
    pub github: GithubContext,
    /// Who runs this: `GITHUB_ACTOR`, else `$USER@hostname`.
    pub actor: String,
    pub to: RollbackTarget,
    pub restore_database: bool,
    pub confirm: Option<String>,
    pub json: bool,
    /// Also post to Slack when a deploy starts (input `slack-on-start`, or `TJ_SLACK_ON_START`).
    pub slack_on_start: bool,
    /// Deploy migrations flagged as destructive where `destructive_migrations = "confirm"`.
    pub allow_destructive_migrations: bool,
    /// The pull request or merge-queue entry of a `pull_request(_target)` / `merge_group` run.
    pub pull_request: Option<PullRequest>,
    /// `--watch DURATION` or the input `watch`: overrides the watch's `duration` for this run.
    pub watch: Option<Duration>,
    /// The day-two commands' own flags (setup, status, logs, restart, history, stats).
    pub ops: OpsFlags,
}

impl Invocation {
    /// Merges flags over action inputs over the process environment.
    pub fn resolve(flags: Flags, vars: &BTreeMap<String, String>) -> Result<Self> {
        let github = GithubContext::from_vars(vars);
        let inputs = if github.actions {
            ActionInputs::from_vars(vars)?
        } else {
            ActionInputs::default()
        };
        let var = |k: &str| vars.get(k).filter(|v| !v.trim().is_empty()).cloned();

        let command = flags.command.or(inputs.command).unwrap_or_else(|| "deploy".to_string());
        let env_text = flags
            .environment
            .or(inputs.environment)
            .ok_or_else(|| Error::invalid("environment: missing (pass -e <env> or the input 'environment')"))?;
        let environment = EnvName::parse("environment", &env_text)?;
        let config_path = flags
            .config
            .or(inputs.config.map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("tj-deploy.toml"));
        let pull_request = inputs::pull_request(&github)?;
        let sha = commit(flags.sha.or(inputs.sha), &command, pull_request.as_ref(), &github)?;
        let dry_run = flag_or_input(flags.dry_run, "dry-run", inputs.dry_run)?;
        let to = match (flags.to, inputs.to) {
            (Some(flag), _) => RollbackTarget::parse("to", &flag)?,
            (None, Some(input)) => RollbackTarget::parse("to", input.trim())?,
            (None, None) => RollbackTarget::Latest,
        };
        let restore_database = flag_or_input(flags.restore_database, "restore-database", inputs.restore_database)?;
        let confirm = flags.confirm.or(inputs.confirm);
        let slack_on_start = match inputs.slack_on_start.or_else(|| var("TJ_SLACK_ON_START")) {
            Some(v) => inputs::boolean("slack-on-start", &v)?,
            None => false,
        };
        let allow_destructive_migrations = flag_or_input(
            flags.allow_destructive_migrations,
            "allow-destructive-migrations",
            inputs.allow_destructive_migrations,
        )?;
        let ssh = SshSecrets {
            key: inputs.ssh_key.or_else(|| var("TJ_SSH_KEY")).map(Secret::new),
            key_file: flags.ssh_key_file,
            known_hosts: inputs.known_hosts.or_else(|| var("TJ_KNOWN_HOSTS")),
            known_hosts_file: flags.known_hosts_file,
        };
        let actor = github.actor.clone().unwrap_or_else(|| {
            let user = var("USER").unwrap_or_else(|| "unknown".to_string());
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default();
            if host.is_empty() {
                user
            } else {
                format!("{user}@{host}")
            }
        });
        Ok(Invocation {
            command,
            environment,
            config_path,
            sha,
            dry_run,
            ssh,
            github_token: inputs.github_token.or_else(|| var("GITHUB_TOKEN")).map(Secret::new),
            slack_webhook: inputs
                .slack_webhook
                .or_else(|| var("SLACK_WEBHOOK_URL"))
                .map(Secret::new),
            github,
            actor,
            to,
            restore_database,
            confirm,
            json: flags.json,
            slack_on_start,
            allow_destructive_migrations,
            pull_request,
            watch: watch::override_duration(flags.watch.or(inputs.watch))?,
            ops: flags.ops,
        })
    }
}

/// The commit: given (flag, then input), else for a PR check the pull request's head (in a
/// `pull_request` job GITHUB_SHA is a temporary merge commit), else GITHUB_SHA.
fn commit(
    given: Option<String>,
    command: &str,
    pr: Option<&PullRequest>,
    github: &GithubContext,
) -> Result<Option<Sha>> {
    let pr_head = pr.filter(|_| command == "check").map(|pr| pr.head_sha.clone());
    let text = given.or(pr_head).or_else(|| github.sha.clone());
    text.map(|s| Sha::parse("sha", &s)).transpose()
}

/// A boolean flag, else the action input of that name, else false.
fn flag_or_input(flag: bool, input: &str, value: Option<String>) -> Result<bool> {
    match value {
        _ if flag => Ok(true),
        Some(v) => inputs::boolean(input, &v),
        None => Ok(false),
    }
}

/// Everything a run needs to know about the app and one environment, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub app: String,
    pub package_dir: PathBuf,
    pub exclude: Vec<String>,
    pub env: EnvConfig,
}

#[derive(Debug, Clone)]
pub struct EnvConfig {
    pub name: EnvName,
    pub hosts: Vec<HostSpec>,
    pub deploy_dir: RemotePath,
    pub backup_dir: RemotePath,
    pub branch: Option<String>,
    pub required_checks: Vec<String>,
    pub require_staging: bool,
    pub confirm_rollback: Option<String>,
    pub health_url: String,
    pub health_timeout: Duration,
    pub health_interval: Duration,
    pub health_request_timeout: Duration,
    pub smoke: Vec<SmokeCheck>,
    pub keep_releases: usize,
    pub keep_backups: usize,
    pub install: Option<String>,
    pub migrate: Option<String>,
    pub reload: Option<String>,
    pub linked_files: Vec<String>,
    pub database_backup: bool,
    pub ssh_config: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// `transport = "local"`: run on this machine instead of over SSH (the sandbox demo).
    pub local: bool,
    /// How long the required-checks gate waits for pending checks.
    pub checks_timeout: Duration,
    pub checks_interval: Duration,
    /// Hosts prepared, and activated, at once.
    pub parallel: usize,
    /// Index into `hosts` of the host where the one database backup, migration and restore run.
    pub database_host: usize,
    /// Relative to the package dir: one directory per migration, each with migration.sql.
    pub migrations_dir: String,
    /// What a deploy does with destructive migration statements.
    pub destructive_migrations: crate::migrations::Policy,
    /// The time limit of each remote step (`timeouts`).
    pub timeouts: Timeouts,
    /// Same lockfile, node and install command as stored dependencies: hard-link them instead
    /// of running `install` (src/deps.rs).
    pub reuse_dependencies: bool,
    /// `availability = "enforce"`: a failed probe during switch..verify fails the run.
    pub availability_enforce: bool,
    /// `health_from = "host"`: health, smoke and availability requests run on each host over
    /// SSH (its app is not reachable from the runner).
    pub health_from_host: bool,
    /// Checked from the runner once every host verified (the balancer's path).
    pub public_url: Option<String>,
    /// The post-deploy watch (`duration` zero: none) and `probe_rate`.
    pub watch: watch::Watch,
    /// `drain`: ship the keep-alive drain preload and wire it into the workers (src/drain/).
    pub drain: bool,
    /// `drain_timeout`: the most a stopping worker waits for its connections to close.
    pub drain_timeout: Duration,
}

pub const DEFAULT_INSTALL: &str = "npm ci --omit=dev";
pub const DEFAULT_MIGRATE: &str = "npx prisma migrate deploy";
pub const DEFAULT_RELOAD: &str = "pm2 startOrReload ecosystem.config.js --update-env";

impl Config {
    /// Reads and validates the config file for `inv.environment`.
    pub fn load(inv: &Invocation) -> Result<Self> {
        let path = &inv.config_path;
        let origin = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::invalid(format!("config: cannot read {origin}: {e}")))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Self::from_text(&origin, &text, base, &inv.environment)
    }

    /// Validates `text` (a `tj-deploy.toml`); relative paths are taken from `base`.
    pub fn from_text(origin: &str, text: &str, base: &Path, environment: &EnvName) -> Result<Self> {
        let raw = file::parse(origin, text)?;
        let app = raw
            .app
            .clone()
            .ok_or_else(|| Error::invalid(format!("{origin}: app: missing (e.g. app = \"trading-journal\")")))?;
        let app_ok = !app.is_empty()
            && app.len() <= 64
            && !app.starts_with(['-', '.'])
            && app.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !app_ok {
            return Err(Error::invalid(format!(
                "{origin}: app: {app:?} may hold only letters, digits, '.', '_' and '-'"
            )));
        }
        for name in raw.environments.keys() {
            EnvName::parse(&format!("{origin}: [environments.{name}]"), name)?;
        }
        let env_raw = raw.environments.get(environment.as_str()).ok_or_else(|| {
            let known: Vec<&str> = raw.environments.keys().map(String::as_str).collect();
            let hint = crate::suggest::hint(environment.as_str(), known.iter().copied());
            Error::invalid(format!(
                "environment: {environment:?} is not in {origin} ({hint}it has: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })?;
        let merged = env_raw.over(&raw.defaults);
        let env = env::validate(origin, environment, &merged, base)?;
        let package_dir = base.join(raw.package.dir.as_deref().unwrap_or("."));
        let exclude = raw
            .package
            .exclude
            .unwrap_or_else(|| vec![".git".into(), "node_modules".into()]);
        for pattern in &exclude {
            values::relative_path(&format!("{origin}: package.exclude"), pattern)?;
        }
        Ok(Config {
            app,
            package_dir,
            exclude,
            env,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
app = "trading-journal"
[defaults]
keep_releases = 3
smoke = ["GET /api/me 401"]
[environments.staging]
hosts = ["deploy@127.0.0.1:2222"]
deploy_dir = "/srv/tj"
backup_dir = "/srv/tj-backups"
health_url = "http://127.0.0.1:3000/api/health"
"#;

    fn env(s: &str) -> EnvName {
        EnvName::parse("environment", s).unwrap()
    }

    #[test]
    fn good_config_gets_defaults() {
        let c = Config::from_text("t.toml", GOOD, Path::new("/x"), &env("staging")).unwrap();
        assert_eq!(c.env.keep_releases, 3);
        assert_eq!(c.env.keep_backups, 10);
        assert_eq!(c.env.reload.as_deref(), Some(DEFAULT_RELOAD));
        assert_eq!(c.env.linked_files, vec![".env"]);
        assert!(c.env.reuse_dependencies);
        let off = GOOD.replace("[defaults]", "[defaults]\nreuse_dependencies = false");
        let c = Config::from_text("t.toml", &off, Path::new("/x"), &env("staging")).unwrap();
        assert!(!c.env.reuse_dependencies);
        assert_eq!(c.package_dir, Path::new("/x/."));
    }

    #[test]
    fn drain_is_on_by_default_and_its_timeout_is_checked() {
        let c = Config::from_text("t.toml", GOOD, Path::new("/x"), &env("staging")).unwrap();
        assert!(c.env.drain);
        assert_eq!(c.env.drain_timeout, Duration::from_millis(1500));
        let text = GOOD.replace("[defaults]", "[defaults]\ndrain = false\ndrain_timeout = \"4s\"");
        let c = Config::from_text("t.toml", &text, Path::new("/x"), &env("staging")).unwrap();
        assert!(!c.env.drain);
        assert_eq!(c.env.drain_timeout, Duration::from_secs(4));
        for bad in ["0s", "11m", "soon"] {
            let text = GOOD.replace("[defaults]", &format!("[defaults]\ndrain_timeout = \"{bad}\""));
            let e = Config::from_text("t.toml", &text, Path::new("/x"), &env("staging")).unwrap_err();
            assert!(
                e.message.contains("environments.staging.drain_timeout"),
                "{bad}: {}",
                e.message
            );
        }
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (GOOD.replace("keep_releases = 3", "keep_releases = 0"), "keep_releases"),
            (GOOD.replace("http://127.0.0.1:3000", "file://"), "health_url"),
            (GOOD.replace("deploy_dir = \"/srv/tj\"\n", ""), "deploy_dir: missing"),
            (
                GOOD.replace("backup_dir = \"/srv/tj-backups\"", "backup_dir = \"/srv/tj/backups\""),
                "backup_dir",
            ),
            (
                GOOD.replace("deploy@127.0.0.1:2222", "-oProxyCommand=touch /tmp/pwned"),
                "hosts",
            ),
            (
                GOOD.replace("[defaults]", "[defaults]\nhealth_timeout = \"soon\""),
                "health_timeout",
            ),
            (GOOD.replace("[defaults]", "[defaults]\nbogus = 1"), "bogus"),
            (
                GOOD.replace("[defaults]", "[defaults]\nreuse_dependencies = \"no\""),
                "reuse_dependencies",
            ),
        ];
        for (text, needle) in cases {
            let e = Config::from_text("t.toml", &text, Path::new("."), &env("staging")).unwrap_err();
            assert_eq!(e.kind, crate::error::Kind::Invalid);
            assert!(e.message.contains(needle), "{needle}: {}", e.message);
        }
        let e = Config::from_text("t.toml", GOOD, Path::new("."), &env("production")).unwrap_err();
        assert!(
            e.message.contains("production") && e.message.contains("staging"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("did you mean"), "{}", e.message);
        let e = Config::from_text("t.toml", GOOD, Path::new("."), &env("stagin")).unwrap_err();
        assert!(
            e.message.contains("(did you mean staging? it has: staging)"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_pr_check_is_about_the_pr_head_unless_a_sha_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let event = dir.path().join("event.json");
        let head = "a".repeat(40);
        std::fs::write(
            &event,
            format!(r#"{{"pull_request":{{"number":7,"head":{{"sha":"{head}","ref":"f"}},"base":{{"ref":"main"}}}}}}"#),
        )
        .unwrap();
        let vars: BTreeMap<String, String> = [
            ("GITHUB_ACTIONS", "true"),
            ("INPUT_ENVIRONMENT", "staging"),
            ("INPUT_COMMAND", "check"),
            ("GITHUB_EVENT_NAME", "pull_request"),
            ("GITHUB_EVENT_PATH", event.to_str().unwrap()),
            ("GITHUB_SHA", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let inv = Invocation::resolve(Flags::default(), &vars).unwrap();
        assert_eq!(inv.sha.unwrap().as_str(), head);
        assert_eq!(inv.pull_request.unwrap().base_ref, "main");
        let given = Flags {
            sha: Some("c".repeat(40)),
            ..Flags::default()
        };
        assert_eq!(
            Invocation::resolve(given, &vars).unwrap().sha.unwrap().as_str(),
            "c".repeat(40)
        );
        let mut with_input = vars.clone();
        with_input.insert("INPUT_SHA".into(), "d".repeat(40));
        let inv = Invocation::resolve(Flags::default(), &with_input).unwrap();
        assert_eq!(inv.sha.unwrap().as_str(), "d".repeat(40));
    }

    #[test]
    fn destructive_migrations_default_follows_confirm_rollback() {
        use crate::migrations::Policy;
        let c = Config::from_text("t.toml", GOOD, Path::new("/x"), &env("staging")).unwrap();
        assert_eq!(c.env.destructive_migrations, Policy::Allow);
        assert_eq!(c.env.migrations_dir, "prisma/migrations");
        let text = GOOD.replace("[defaults]", "[defaults]\nconfirm_rollback = \"YES\"");
        let c = Config::from_text("t.toml", &text, Path::new("/x"), &env("staging")).unwrap();
        assert_eq!(c.env.destructive_migrations, Policy::Confirm);
        let text = GOOD.replace(
            "[defaults]",
            "[defaults]\ndestructive_migrations = \"refuse\"\nmigrations_dir = \"db/m\"",
        );
        let c = Config::from_text("t.toml", &text, Path::new("/x"), &env("staging")).unwrap();
        assert_eq!(
            (c.env.destructive_migrations, c.env.migrations_dir.as_str()),
            (Policy::Refuse, "db/m")
        );
        for (bad, key) in [
            ("destructive_migrations = \"ask\"", "destructive_migrations"),
            ("migrations_dir = \"../x\"", "migrations_dir"),
        ] {
            let text = GOOD.replace("[defaults]", &format!("[defaults]\n{bad}"));
            let e = Config::from_text("t.toml", &text, Path::new("/x"), &env("staging")).unwrap_err();
            assert!(e.message.contains(key), "{}", e.message);
        }
    }

    #[test]
    fn flags_win_over_inputs() {
        let vars: BTreeMap<String, String> = [
            ("GITHUB_ACTIONS", "true"),
            ("INPUT_ENVIRONMENT", "production"),
            ("INPUT_DRY-RUN", "false"),
            ("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let inv = Invocation::resolve(
            Flags {
                environment: Some("staging".into()),
                ..Flags::default()
            },
            &vars,
        )
        .unwrap();
        assert_eq!(inv.environment.as_str(), "staging");
        assert!(!inv.dry_run);
        assert_eq!(inv.sha.unwrap().short(), "0123456");
        let inv = Invocation::resolve(Flags::default(), &vars).unwrap();
        assert_eq!(inv.environment.as_str(), "production");
    }

    #[test]
    fn several_hosts_need_host_in_health_url() {
        let text = GOOD.replace(
            "hosts = [\"deploy@127.0.0.1:2222\"]",
            "hosts = [\"deploy@127.0.0.1:2222\", \"deploy@127.0.0.2:2222\"]",
        );
        let e = Config::from_text("t.toml", &text, Path::new("."), &env("staging")).unwrap_err();
        assert_eq!(e.kind, crate::error::Kind::Invalid);
        assert!(
            e.message.contains("health_url") && e.message.contains("{host}"),
            "{}",
            e.message
        );
        let ok = text.replace("http://127.0.0.1:3000", "http://{host}:3000");
        assert!(Config::from_text("t.toml", &ok, Path::new("."), &env("staging")).is_ok());
        assert!(e.message.contains("health_from = \"host\""), "{}", e.message);
        let on_host = text.replace(
            "health_url = \"http://127.0.0.1:3000/api/health\"",
            "health_url = \"http://127.0.0.1:3000/api/health\"\nhealth_from = \"host\"\npublic_url = \"https://lb.example.com/api/health\"",
        );
        let c = Config::from_text("t.toml", &on_host, Path::new("."), &env("staging")).unwrap();
        assert!(c.env.health_from_host);
        assert_eq!(c.env.public_url.as_deref(), Some("https://lb.example.com/api/health"));
        for (bad, key) in [
            ("health_from = \"host\"", "health_from = \"balancer\""),
            (
                "public_url = \"https://lb.example.com/api/health\"",
                "public_url = \"http://{host}/x\"",
            ),
        ] {
            let e =
                Config::from_text("t.toml", &on_host.replace(bad, key), Path::new("."), &env("staging")).unwrap_err();
            let name = key.split(' ').next().unwrap_or_default();
            assert!(e.message.contains(name), "{}", e.message);
        }
    }

    #[test]
    fn availability_is_warn_or_enforce() {
        let with = |v: &str| {
            GOOD.replace(
                "keep_releases = 3",
                &format!("keep_releases = 3\navailability = \"{v}\""),
            )
        };
        let c = Config::from_text("t.toml", &with("enforce"), Path::new("."), &env("staging")).unwrap();
        assert!(c.env.availability_enforce);
        let e = Config::from_text("t.toml", &with("strict"), Path::new("."), &env("staging")).unwrap_err();
        assert!(
            e.message.contains("availability") && e.message.contains("strict"),
            "{}",
            e.message
        );
    }
}
