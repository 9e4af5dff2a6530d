//! Issue #7: hostile and malformed input. Each is refused with exit 2 and a one-line error
//! naming the input, before any connection; values that legitimately reach remote commands
//! (paths, file names) are quoted so they arrive as data.

mod support;

use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::{Run, Sandbox, sha};

/// A port that counts the connections made to it: a refused run must make none.
fn counting_port() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            if s.is_ok() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (port, n)
}

fn config(port: u16, env_extra: &str, top_extra: &str) -> String {
    format!(
        "app = \"trading-journal\"\n{top_extra}\n[package]\ndir = \"{}\"\n[environments.staging]\nhosts = [\"deploy@127.0.0.1:{port}\"]\ndeploy_dir = \"/srv/h\"\nbackup_dir = \"/srv/h-backups\"\nhealth_url = \"http://127.0.0.1:{port}/api/health\"\n{env_extra}\n",
        support::repo().join("examples/trading-journal").display()
    )
}

fn run_with(text: &str, args: &[&std::ffi::OsStr]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tj-deploy.toml");
    std::fs::write(&path, text).unwrap();
    let mut c = Command::new(support::bin());
    c.args(args)
        .arg("--config")
        .arg(&path)
        .arg("--known-hosts-file")
        .arg("/dev/null")
        .env_remove("GITHUB_ACTIONS");
    Run::of(c.output().unwrap())
}

#[test]
fn hostile_config_and_arguments_exit_2_naming_the_input_without_connecting() {
    let (port, connections) = counting_port();
    let sha1 = sha(1);
    let deploy_args = ["deploy", "-e", "staging", "--sha", sha1.as_str()];
    let deploy: Vec<&std::ffi::OsStr> = deploy_args.iter().map(std::ffi::OsStr::new).collect();
    let good = config(port, "", "");
    let replace_host = |h: &str| good.replace(&format!("deploy@127.0.0.1:{port}"), h);
    let big = "x".repeat(1 << 20);
    let cases: Vec<(String, &str)> = vec![
        (replace_host("-oProxyCommand=touch /tmp/pwned"), "hosts"),
        (replace_host("deploy@127.0.0.1:0"), "hosts"),
        (replace_host("deploy@127.0.0.1:99999"), "hosts"),
        (replace_host("deploy@127.0.0.1:ssh"), "hosts"),
        (replace_host(""), "hosts"),
        (replace_host("deploy@host;touch /tmp/pwned"), "hosts"),
        (
            good.replace("deploy_dir = \"/srv/h\"", "deploy_dir = \"/srv/../etc\""),
            "deploy_dir",
        ),
        (
            good.replace("deploy_dir = \"/srv/h\"", "deploy_dir = \"/srv/h\\nrm -rf /\""),
            "deploy_dir",
        ),
        (
            good.replace("deploy_dir = \"/srv/h\"", &format!("deploy_dir = \"/srv/{big}\"")),
            "deploy_dir",
        ),
        (config(port, "branch = \"main;$(id)\"", ""), "branch"),
        (config(port, "branch = \"feature/../main\"", ""), "branch"),
        (config(port, "install = \"npm ci\\u0000rm\"", ""), "install"),
        (config(port, "required_check = [\"lint\"]", ""), "required_check"),
        (config(port, "keep_releases = \"five\"", ""), "keep_releases"),
        (config(port, "keep_releases = 0", ""), "keep_releases"),
        (config(port, "health_timeout = \"soon\"", ""), "health_timeout"),
        (good.replace("http://127.0.0.1", "file:///etc/passwd#"), "health_url"),
        (good.replace("hosts = ", "hosts_ = "), "hosts"),
        (format!("{good}\n[environments.staging]\n"), "staging"),
        (
            good.replace("app = \"trading-journal\"", "app = \"$(touch /tmp/pwned)\""),
            "app",
        ),
        (
            good.replace(
                &support::repo().join("examples/trading-journal").display().to_string(),
                "/nonexistent/build",
            ),
            "package.dir",
        ),
    ];
    for (text, needle) in &cases {
        let run = run_with(text, &deploy);
        assert_eq!(run.code, 2, "{needle}: exit {}\n{}", run.code, run.all());
        let line = run.error_line();
        assert!(line.contains(needle), "{needle}: {line}");
        // One line (an unknown key lists every valid key after its "did you mean").
        assert!(
            line.len() < 1500 && !line.contains('\n'),
            "one line: {} bytes",
            line.len()
        );
    }
    // Environment names and other arguments, including bytes that are not UTF-8.
    let hostile_envs: Vec<Vec<u8>> = vec![
        b"../x".to_vec(),
        b"a;b".to_vec(),
        b"$(touch /tmp/pwned)".to_vec(),
        b"`id`".to_vec(),
        b"a'b\"c".to_vec(),
        b"a\nb".to_vec(),
        vec![b'x'; 100_000],
        vec![0xff, 0xfe, b'a'],
    ];
    for env in &hostile_envs {
        let args: Vec<&std::ffi::OsStr> = vec![
            "deploy".as_ref(),
            "-e".as_ref(),
            std::ffi::OsStr::from_bytes(env),
            "--sha".as_ref(),
            sha1.as_ref(),
        ];
        let run = run_with(&good, &args);
        assert_eq!(
            run.code,
            2,
            "{:?}: {}",
            String::from_utf8_lossy(&env[..env.len().min(20)]),
            run.all()
        );
    }
    let run = run_with(
        &good,
        &["deploy", "-e", "staging", "--sha", "abc;rm"].map(std::ffi::OsStr::new),
    );
    assert_eq!(run.code, 2);
    assert!(run.error_line().contains("sha"), "{}", run.error_line());
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a refused run connected to the host"
    );
    assert!(!std::path::Path::new("/tmp/pwned").exists());
}

/// File names with spaces, newlines, non-ASCII and shell syntax deploy as plain files, into a
/// deploy_dir whose own path is hostile, and nothing they spell is ever run.
#[test]
fn hostile_file_names_and_paths_arrive_as_data() {
    let sb = Sandbox::new("names");
    let marker = sb.root.join("pwned");
    let names = [
        "with space.js".to_string(),
        "new\nline.txt".to_string(),
        "ünïcødé-日本.json".to_string(),
        "$(touch tj-pwned-marker)".to_string(),
        "`touch tj-pwned-marker`".to_string(),
        "quote'and\"double.txt".to_string(),
        "-rf".to_string(),
    ];
    let files = sb.build_dir.join("public");
    std::fs::create_dir_all(&files).unwrap();
    for n in &names {
        std::fs::write(files.join(n), format!("content of {n}")).unwrap();
    }
    std::os::unix::fs::symlink("/etc/passwd", sb.build_dir.join("passwd")).unwrap();

    // A deploy_dir whose path itself is shell syntax.
    let odd = sb.root.join(format!("srv dir $(touch {}) 'q'", marker.display()));
    std::fs::create_dir_all(odd.join("shared")).unwrap();
    std::fs::copy(sb.deploy_dir.join("shared/.env"), odd.join("shared/.env")).unwrap();
    support::sh_ok(&format!(
        "chown -R deploy: '{}'",
        odd.display().to_string().replace('\'', "'\\''")
    ));
    let text = std::fs::read_to_string(&sb.config).unwrap();
    let text = text.replace(
        &format!("deploy_dir = \"{}\"", sb.deploy_dir.display()),
        &format!("deploy_dir = {:?}", odd.display().to_string()),
    );
    std::fs::write(&sb.config, text).unwrap();
    let run = sb.deploy(&sha(1));
    run.expect(0);
    let current = odd.join("current");
    for n in &names {
        let got = std::fs::read_to_string(current.join("public").join(n)).unwrap_or_else(|e| panic!("{n:?}: {e}"));
        assert_eq!(got, format!("content of {n}"));
    }
    let link = std::fs::read_link(current.join("passwd")).unwrap();
    assert_eq!(link, std::path::Path::new("/etc/passwd"), "a symlink stays a symlink");
    assert!(!marker.exists(), "a path name was executed");
    let release = std::fs::canonicalize(&current).unwrap();
    for dir in [
        std::path::PathBuf::from("/home/deploy"),
        std::path::PathBuf::from("/"),
        sb.root.clone(),
        odd.clone(),
        release,
    ] {
        assert!(
            !dir.join("tj-pwned-marker").exists(),
            "a file name was executed (marker in {})",
            dir.display()
        );
    }
    assert_eq!(sb.revision().as_deref(), Some(sha(1).as_str()));
}

mod properties {
    //! Property tests of the parsers that guard every value reaching a shell or a path.
    use proptest::prelude::*;
    use tj_deploy::config::{EnvName, HostSpec, ReleaseId};
    use tj_deploy::remote::commands::quote;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        #[test]
        fn host_parser_never_panics_and_round_trips(s in "\\PC{0,40}") {
            if let Ok(h) = HostSpec::parse("hosts", &s) {
                prop_assert!(!h.host.starts_with('-'));
                let again = HostSpec::parse("hosts", &h.to_string()).unwrap();
                prop_assert_eq!(again, h);
            }
        }

        #[test]
        fn release_ids_accept_only_their_format(s in "[0-9_;./ a-z]{0,20}") {
            if let Ok(id) = ReleaseId::parse("to", &s) {
                prop_assert_eq!(id.to_string(), s);
            }
        }

        #[test]
        fn env_names_are_plain(s in "\\PC{0,30}") {
            if let Ok(e) = EnvName::parse("environment", &s) {
                prop_assert!(e.as_str().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'));
            }
        }

        #[test]
        fn config_parser_never_panics(s in "\\PC{0,300}") {
            let env = EnvName::parse("environment", "staging").unwrap();
            let _ = tj_deploy::config::Config::from_text("fuzz.toml", &s, std::path::Path::new("."), &env);
        }

        #[test]
        fn quoted_strings_reach_the_shell_unchanged(s in "[^\\x00]{0,40}") {
            let out = std::process::Command::new("sh").arg("-c").arg(format!("printf '%s' {}", quote(&s))).output().unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }
}
