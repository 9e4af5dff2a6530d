use std::path::Path;

use super::*;
use crate::config::{Config, EnvName};

fn project(next: bool, prisma: bool, manager: Manager, lockfile: Option<&'static str>) -> Project {
    Project {
        app: "shop".into(),
        app_source: "package.json".into(),
        manager,
        lockfile,
        prisma,
        next,
        entry: ecosystem::Entry {
            script: "server.js".into(),
            args: None,
            note: "x".into(),
        },
        ecosystem: None,
        production_branch: Branch {
            name: "master".into(),
            found: true,
        },
        staging_branch: Branch {
            name: "develop".into(),
            found: false,
        },
    }
}

/// The generated file, with `health_url` filled in as the user would.
fn filled(text: &str) -> String {
    text.replace(
        "# health_url = \"https://staging.example.com/api/health\"",
        "health_url = \"https://staging.example.com/api/health\"",
    )
    .replace(
        "# health_url = \"https://production.example.com/api/health\"",
        "health_url = \"https://production.example.com/api/health\"",
    )
}

#[test]
fn the_generated_config_loads_once_health_url_is_filled() {
    for p in [
        project(true, true, Manager::Npm, Some("package-lock.json")),
        project(false, false, Manager::Yarn, Some("yarn.lock")),
        project(false, false, Manager::Npm, None),
    ] {
        let text = render_config(&p);
        assert!(!text.contains("{{"), "{text}");
        let staging = EnvName::parse("e", "staging").unwrap();
        let e = Config::from_text("t.toml", &text, Path::new("/app"), &staging).unwrap_err();
        assert!(e.message.contains("health_url: missing"), "{}", e.message);
        let text = filled(&text);
        let c = Config::from_text("t.toml", &text, Path::new("/app"), &staging).unwrap();
        assert_eq!(c.app, "shop");
        assert_eq!(c.exclude, [".git", "node_modules", ".next/cache"]);
        assert_eq!(c.env.branch.as_deref(), Some("develop"));
        assert_eq!(c.env.install.as_deref(), Some(p.manager.install(p.lockfile.is_some())));
        assert_eq!(c.env.migrate.is_some(), p.prisma);
        assert_eq!(c.env.database_backup, p.prisma);
        assert!(!c.env.require_staging);
        let prod = EnvName::parse("e", "production").unwrap();
        let c = Config::from_text("t.toml", &text, Path::new("/app"), &prod).unwrap();
        assert!(c.env.require_staging);
        assert_eq!(c.env.confirm_rollback.as_deref(), Some("ROLLBACK PRODUCTION"));
        assert_eq!(c.env.branch.as_deref(), Some("master"));
    }
}

#[test]
fn every_key_that_needs_a_value_says_so() {
    let text = render_config(&project(false, false, Manager::Pnpm, Some("pnpm-lock.yaml")));
    for key in [
        "hosts",
        "deploy_dir",
        "backup_dir",
        "health_url",
        "smoke",
        "migrate",
        "branch = \"develop\"",
    ] {
        let line = text
            .lines()
            .find(|l| l.trim_start_matches("# ").starts_with(key))
            .unwrap_or_else(|| panic!("{key} missing:\n{text}"));
        assert!(line.contains("FILL IN"), "{line}");
    }
    assert!(
        text.contains("install = \"pnpm install --prod --frozen-lockfile\""),
        "{text}"
    );
    assert!(text.contains("migrate = \"\""), "{text}");
}

#[test]
fn workflows_take_the_branches_and_the_package_manager() {
    let mut p = project(false, false, Manager::Pnpm, Some("pnpm-lock.yaml"));
    p.staging_branch.name = "staging-branch".into();
    let files = workflows(&p);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            ".github/workflows/deploy-staging.yml",
            ".github/workflows/deploy-production.yml",
            ".github/workflows/rollback.yml",
            ".github/workflows/pr-check.yml"
        ]
    );
    let text = |i: usize| files[i].1.as_str();
    assert!(text(0).contains("branches: [staging-branch]"));
    assert!(text(0).contains("corepack enable && pnpm install --frozen-lockfile\n"));
    assert!(text(1).contains("branches: [master]"));
    assert!(text(3).contains("branches: [master, staging-branch]"));
    assert!(text(3).contains("github.base_ref == 'master'"));
    for (name, t) in &files {
        assert!(
            !t.contains("develop") && !t.contains("main") && !t.contains("npm ci"),
            "{name}:\n{t}"
        );
    }
    // npm and the default branches give the examples back unchanged.
    let mut p = project(false, false, Manager::Npm, Some("package-lock.json"));
    p.production_branch.name = "main".into();
    let examples = workflows(&p);
    assert!(examples[0].1 == include_str!("../../examples/workflows/deploy-staging.yml"));
    assert!(examples[3].1 == include_str!("../../examples/workflows/pr-check.yml"));
}

#[test]
fn an_existing_cjs_ecosystem_is_what_reload_uses() {
    let mut p = project(false, false, Manager::Npm, Some("package-lock.json"));
    p.ecosystem = Some("ecosystem.config.cjs");
    let text = render_config(&p);
    assert!(
        text.contains("reload = \"pm2 startOrReload ecosystem.config.cjs --update-env\""),
        "{text}"
    );
}

#[test]
fn comments_line_up_per_table() {
    let text = render_config(&project(true, true, Manager::Npm, Some("package-lock.json")));
    let column = |key: &str| {
        let line = text.lines().find(|l| l.starts_with(key)).unwrap();
        line.find("  # ")
            .map(|i| i + 2)
            .unwrap_or_else(|| line.find("# ").unwrap())
    };
    assert_eq!(column("app ="), 32);
    assert_eq!(column("dir ="), 32);
    assert_eq!(column("install ="), column("migrate ="));
    assert_eq!(column("hosts = [\"deploy@staging"), column("branch = \"develop\""));
}
