//! The action input `args` (DESIGN.md §7 "Action inputs for command flags"): the chosen
//! command's extra flags (`--hard`, `--lines 100 --err`, `--since 30d`, …), split into words as
//! a shell would but never given to one, and parsed by the CLI's own parser for that command,
//! so an unknown flag is invalid input exactly as on the command line.

use std::collections::BTreeMap;

use clap::Parser;

use crate::cli::Cli;
use crate::error::{Error, Result};

/// In an Actions run without a subcommand, the command from `INPUT_COMMAND` with the words of
/// `INPUT_ARGS`, parsed as `tj-deploy <command> <args…>`; otherwise `cli` unchanged.
pub fn apply(cli: Cli, vars: &BTreeMap<String, String>) -> Result<Cli> {
    let get = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let (None, Some("true"), Some(args)) = (&cli.command, get("GITHUB_ACTIONS"), get("INPUT_ARGS")) else {
        return Ok(cli);
    };
    let command = get("INPUT_COMMAND").unwrap_or("deploy");
    let words = shlex::split(args)
        .ok_or_else(|| Error::invalid("args: unbalanced quotes (the input is split into words as a shell would)"))?;
    // The environment, the config and the secrets come from their own inputs: a free-text
    // `args` must not aim one environment's key at another.
    const OWN_INPUTS: [&str; 5] = [
        "-e",
        "--environment",
        "--config",
        "--ssh-key-file",
        "--known-hosts-file",
    ];
    if let Some(w) = words
        .iter()
        .find(|w| OWN_INPUTS.iter().any(|f| *w == f || w.starts_with(&format!("{f}="))))
    {
        return Err(Error::invalid(format!(
            "args: {w} has an input of its own (environment, config, ssh-key, known-hosts); it cannot be given in args"
        )));
    }
    let argv = ["tj-deploy", command].into_iter().map(str::to_string).chain(words);
    Cli::try_parse_from(argv).map_err(|e| {
        let first = e
            .to_string()
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ")
            .to_string();
        Error::invalid(format!(
            "args: {first} (flags of `tj-deploy {command}`; see `tj-deploy {command} --help`)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cmd;

    fn vars(command: &str, args: &str) -> BTreeMap<String, String> {
        [
            ("GITHUB_ACTIONS", "true"),
            ("INPUT_COMMAND", command),
            ("INPUT_ARGS", args),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn none() -> Cli {
        Cli { command: None }
    }

    #[test]
    fn args_are_parsed_by_the_commands_own_parser() {
        let cli = apply(none(), &vars("logs", "--lines 100 --err --grep 'GET /api me'")).unwrap();
        let Some(Cmd::Logs(a)) = cli.command else {
            panic!("logs")
        };
        assert_eq!((a.lines, a.err, a.grep.as_deref()), (100, true, Some("GET /api me")));
        let cli = apply(none(), &vars("restart", "--hard")).unwrap();
        assert!(matches!(cli.command, Some(Cmd::Restart(a)) if a.hard));
    }

    #[test]
    fn an_unknown_flag_or_bad_quotes_is_invalid_input() {
        let e = apply(none(), &vars("stats", "--sinse 30d")).err().unwrap();
        assert_eq!(e.kind, crate::error::Kind::Invalid);
        assert!(
            e.message.starts_with("args: unexpected argument '--sinse'"),
            "{}",
            e.message
        );
        assert!(apply(none(), &vars("stats", "--since '30d")).is_err());
        // Words are never given to a shell: `$(…)` is just text.
        let cli = apply(none(), &vars("logs", "--grep $(reboot)")).unwrap();
        assert!(matches!(cli.command, Some(Cmd::Logs(a)) if a.grep.as_deref() == Some("$(reboot)")));
    }

    #[test]
    fn args_cannot_carry_the_environment_or_secrets() {
        for a in [
            "-e production",
            "--environment=production",
            "--config other.toml",
            "--ssh-key-file /k",
        ] {
            let vars: BTreeMap<String, String> = [
                ("GITHUB_ACTIONS", "true"),
                ("INPUT_COMMAND", "status"),
                ("INPUT_ARGS", a),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            let cli = Cli { command: None };
            let e = apply(cli, &vars).unwrap_err();
            assert!(e.message.contains("input of its own"), "{a}: {}", e.message);
        }
    }
}
