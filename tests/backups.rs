//! Issues #12 (items 1 and 3) and #20 against the real sshd, PM2 and PostgreSQL: `shared/.env`
//! read as dotenv with a Prisma URL, the password never visible to `ps`, backups that hard-link
//! the release's package, and everything under `backup_dir` private to the deploy user.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use support::{DEPLOY_USER, Run, Sandbox, sh, sh_ok, sha};

/// A password with every character a URL, a `.pgpass` line or a shell could trip on.
const HOSTILE_PASSWORD: &str = "p@ss:w/o&r$d#1;\\x";

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn rollback(sb: &Sandbox, extra: &[&str]) -> Run {
    let mut args = vec!["rollback", "-e", "staging"];
    args.extend_from_slice(extra);
    Run::of(sb.cmd(&args).output().expect("run tj-deploy"))
}

/// The line of a step's end (`✓ backup [host] (0.2s)`).
fn step_line(run: &Run, step: &str) -> String {
    run.all()
        .lines()
        .find(|l| l.starts_with(&format!("✓ {step} [")))
        .unwrap_or("")
        .to_string()
}

/// Wraps `tool` on the host's PATH: records its arguments, its environment, the mode of its
/// PGPASSFILE and every process's command line (`ps -eo args`) while it runs, then runs it.
fn wrap_pg_tool(sb: &Sandbox, tool: &str, log: &Path) {
    let bin = sb.root.join("hostbin");
    std::fs::create_dir_all(&bin).unwrap();
    let real = sh_ok(&format!("command -v {tool}")).trim().to_string();
    let script = format!(
        "#!/bin/sh\n{{ echo \"== {tool}\"; printf 'ARGS:'; printf ' [%s]' \"$@\"; echo; echo ENV:; env; \
         echo PGPASS: \"$PGPASSFILE\" $(stat -c %a \"$PGPASSFILE\" \"$(dirname \"$PGPASSFILE\")\"); \
         echo PS:; ps -eo args; for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; tr '\\0' '\\n' < $p/environ 2>/dev/null; done; }} >> {log} 2>&1\nexec {real} \"$@\"\n",
        log = log.display()
    );
    let path = bin.join(tool);
    std::fs::write(&path, script).unwrap();
    sh_ok(&format!(
        "chmod 755 {p}; touch {log}; chown -R {DEPLOY_USER}: {b} {log}",
        p = path.display(),
        b = bin.display(),
        log = log.display()
    ));
}

/// The harness's cluster trusts every local connection; make role `tj` prove its password
/// (scram-sha-256) so a test shows the password really reached libpq.
fn require_password(pg: &support::Postgres) {
    let hba = pg.dir.join("data/pg_hba.conf");
    let text = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("host all tj 127.0.0.1/32 scram-sha-256\n{text}")).unwrap();
    sh_ok(&format!(
        "runuser -u postgres -- {} -D {}/data reload >/dev/null",
        support::pg_bin("pg_ctl").display(),
        pg.dir.display()
    ));
    let refused = sh(&format!(
        "PGPASSWORD=wrong psql -X -h 127.0.0.1 -p {} -U tj -d tj -c 'SELECT 1'",
        pg.port
    ));
    assert!(!refused.status.success(), "the cluster must check passwords now");
}

/// Every path under `dir` (and `dir`) with a group or other permission bit.
fn open_paths(dir: &Path) -> String {
    sh_ok(&format!("find {} -perm /077 -printf '%m %p\\n'", dir.display()))
}

#[test]
fn prisma_url_hostile_password_private_package_backups_and_restore() {
    let sb = Sandbox::new("bkp");
    sb.pg.psql(
        "postgres",
        &format!("ALTER ROLE tj PASSWORD '{}'", HOSTILE_PASSWORD.replace('\'', "''")),
    );
    require_password(&sb.pg);
    let encoded = percent_encode(HOSTILE_PASSWORD);
    let url = format!(
        "postgresql://tj:{encoded}@127.0.0.1:{}/tj?schema=public&connection_limit=5",
        sb.pg.port
    );
    // Unquoted with `&`, and neighbours a shell would choke on.
    std::fs::write(
        sb.deploy_dir.join("shared/.env"),
        format!(
            "# Prisma-style .env\nPORT={}\nexport GREETING=\"hello # not a comment\"\nPRICE=$5 & up; really\nDATABASE_URL={url}\nSINGLE='$(touch /tmp/tj-pwned)'\n",
            sb.app_port
        ),
    )
    .unwrap();
    sh_ok(&format!(
        "chown {DEPLOY_USER}: {e}; chmod 644 {e}",
        e = sb.deploy_dir.join("shared/.env").display()
    ));
    // A backup from before private modes, and a foreign directory that is not ours.
    let old = sb.backup_dir.join("20200101_000000");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("db.dump"), "old dump").unwrap();
    std::fs::write(old.join("manifest.json"), "{}").unwrap();
    sh_ok(&format!(
        "chown -R {DEPLOY_USER}: {o}; chmod 755 {o} {b}; chmod 644 {o}/*",
        o = old.display(),
        b = sb.backup_dir.display()
    ));
    let log = sb.root.join("pgwrap.log");
    wrap_pg_tool(&sb, "pg_dump", &log);
    wrap_pg_tool(&sb, "pg_restore", &log);
    // The migrate step (the sample app's psql stand-in for Prisma) is held to the same rule.
    wrap_pg_tool(&sb, "psql", &log);

    // First deploy: nothing live, the backup is the database only.
    let run = sb.deploy(&sha(1));
    run.expect(0);
    let all = run.all();
    assert!(
        all.contains("made 1 older backup(s) and the directory") && all.contains("private to the deploy user"),
        "{all}"
    );
    assert!(
        all.contains("shared/.env is readable by other accounts") && all.contains("chmod -R go-rwx"),
        "{all}"
    );
    assert!(!Path::new("/tmp/tj-pwned").exists());
    let b1 = sb
        .backups()
        .into_iter()
        .find(|b| !b.starts_with("2020"))
        .expect("backup 1");
    assert!(sb.backup_dir.join(&b1).join("db.dump").is_file());

    sb.pg.psql(
        "tj",
        "INSERT INTO trades (symbol, side, qty, price) SELECT 'MSFT', 'buy', g, 1 FROM generate_series(1, 3) g",
    );
    sb.set_app("2.0.0", false);
    let run = sb.deploy(&sha(2));
    run.expect(0);
    println!("second deploy: {}", step_line(&run, "backup"));
    let releases = sb.releases();
    let b2 = releases[1].clone();
    let bdir = sb.backup_dir.join(&b2);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bdir.join("manifest.json")).unwrap()).unwrap();
    let pkg_sha = m["package"].as_str().expect("manifest names the package").to_string();
    assert_eq!(m["app"], "package");
    assert_eq!(m["release"], releases[0].as_str());
    assert_eq!(m["lockfile"]["name"], "package-lock.json");
    let names: Vec<&str> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"package.tar.gz") && names.contains(&"db.dump") && names.contains(&"shared/.env"));
    assert!(!bdir.join("app.tar.gz").exists(), "no tarball of the release");
    let link = std::fs::metadata(bdir.join("package.tar.gz")).unwrap();
    let pkg = std::fs::metadata(sb.deploy_dir.join(format!(".tj-deploy/packages/{pkg_sha}.tar.gz"))).unwrap();
    assert_eq!(link.ino(), pkg.ino(), "a hard link of the package");
    assert_eq!(pkg.mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(bdir.join("shared/.env")).unwrap().mode() & 0o777,
        0o600
    );

    // Rows written after backup b2, then a rollback to it with the database.
    sb.pg.psql(
        "tj",
        "INSERT INTO trades (symbol, side, qty, price) SELECT 'TSLA', 'sell', g, 1 FROM generate_series(1, 4) g",
    );
    // The release and every package are pruned: the backup alone must bring v1 back.
    std::fs::remove_dir_all(sb.deploy_dir.join("releases").join(&releases[0])).unwrap();
    sh_ok(&format!("rm -f {}/.tj-deploy/packages/*", sb.deploy_dir.display()));
    let run = rollback(&sb, &["--to", &b2, "--restore-database"]);
    run.expect(0);
    println!(
        "rollback: {} | {}",
        step_line(&run, "safety backup"),
        step_line(&run, "restore")
    );
    assert!(
        run.stdout.contains("install"),
        "dependencies installed after a restore from the package"
    );
    assert_eq!(sb.revision().as_deref(), Some(sha(1).as_str()));
    assert_eq!(
        sb.pg.psql("tj", "SELECT count(*) FROM trades WHERE symbol = 'MSFT'"),
        "3"
    );
    assert_eq!(
        sb.pg.psql("tj", "SELECT count(*) FROM trades WHERE symbol = 'TSLA'"),
        "0"
    );
    let restored = sb.deploy_dir.join("releases").join(&releases[0]);
    assert_eq!(
        std::fs::read_to_string(restored.join("REVISION")).unwrap().trim(),
        sha(1)
    );
    assert_eq!(
        std::fs::read_to_string(restored.join("PACKAGE")).unwrap().trim(),
        pkg_sha
    );
    assert!(
        std::fs::symlink_metadata(restored.join(".env"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // The password never reached a command line or an environment (#12 item 1).
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(seen.contains("== pg_dump") && seen.contains("== pg_restore"), "{seen}");
    for needle in [HOSTILE_PASSWORD, encoded.as_str(), "p@ss:w/o"] {
        assert!(!seen.contains(needle), "{needle:?} visible to ps or /proc:\n{seen}");
    }
    assert!(!seen.contains("schema=public"), "Prisma parameters reached libpq");
    let pgpass: Vec<&str> = seen.lines().filter(|l| l.starts_with("PGPASS:")).collect();
    assert!(!pgpass.is_empty());
    for l in &pgpass {
        let words: Vec<&str> = l.split(' ').collect();
        assert_eq!(words.get(2..4), Some(&["600", "700"][..]), "{l}");
        assert!(!Path::new(words[1]).exists(), "{} removed after the step", words[1]);
    }

    // The same URL single-quoted after `export`, spaces around `=`: the next backup dumps too.
    std::fs::write(
        sb.deploy_dir.join("shared/.env"),
        format!(
            "PORT={}\nexport DATABASE_URL = '{url}'\nAFTER=\"x\" # trailing\n",
            sb.app_port
        ),
    )
    .unwrap();
    sb.set_app("3.0.0", false);
    sb.deploy(&sha(3)).expect(0);
    let b3 = sb.releases().last().unwrap().clone();
    assert!(sb.backup_dir.join(&b3).join("db.dump").is_file());

    // #20: nothing under backup_dir for group or others, and another account cannot read a dump.
    assert_eq!(open_paths(&sb.backup_dir), "", "paths readable by others");
    let dump = sb.backup_dir.join(&b2).join("db.dump");
    let other = sh(&format!("runuser -u nobody -- cat {} >/dev/null", dump.display()));
    assert!(!other.status.success(), "nobody read the dump");
    assert!(
        sh(&format!(
            "runuser -u {DEPLOY_USER} -- cat {} >/dev/null",
            dump.display()
        ))
        .status
        .success()
    );
    let meta = sb.deploy_dir.join(".tj-deploy");
    assert_eq!(
        std::fs::metadata(&meta).unwrap().mode() & 0o022,
        0,
        ".tj-deploy not writable by others"
    );
    assert_eq!(
        std::fs::metadata(meta.join("packages")).unwrap().mode() & 0o077,
        0,
        "packages private"
    );
}

#[test]
fn foreign_release_is_backed_up_without_node_modules_and_restored_by_install() {
    let sb = Sandbox::new("bkt");
    sb.deploy(&sha(1)).expect(0);
    let r1 = sb.releases()[0].clone();
    let live = sb.deploy_dir.join("releases").join(&r1);
    // A release tj-deploy did not make: no PACKAGE; and a large node_modules to leave out.
    std::fs::remove_file(live.join("PACKAGE")).unwrap();
    sh_ok(&format!(
        "mkdir -p {nm}/big && for i in $(seq 1 40); do head -c 4000000 /dev/urandom > {nm}/big/f$i; done; chown -R {DEPLOY_USER}: {nm}",
        nm = live.join("node_modules").display()
    ));
    let t0 = Instant::now();
    sh_ok(&format!(
        "tar -czf {}/full.tar.gz -C {} .",
        sb.root.display(),
        live.display()
    ));
    let full_tar = t0.elapsed();

    sb.set_app("2.0.0", false);
    let run = sb.deploy(&sha(2));
    run.expect(0);
    println!(
        "backup of a live release with 160 MB of node_modules: before (tar.gz of the release) {full_tar:?}; now: {}",
        step_line(&run, "backup")
    );
    let b2 = sb.releases()[1].clone();
    let tarball = sb.backup_dir.join(&b2).join("app.tar.gz");
    let listing = sh_ok(&format!("tar -tzf {}", tarball.display()));
    assert!(!listing.contains("node_modules"), "{listing}");
    assert!(listing.contains("./REVISION"), "{listing}");

    // Deploy v3 with a package again: its backup hard-links v2's package.
    sb.set_app("3.0.0", false);
    let run = sb.deploy(&sha(3));
    run.expect(0);
    println!(
        "backup of a package-made release, with pg_dump: {}",
        step_line(&run, "backup")
    );
    sb.write_config("database_backup = false");
    sb.set_app("4.0.0", false);
    let run = sb.deploy(&sha(4));
    run.expect(0);
    println!(
        "backup of a package-made release, app part only: {}",
        step_line(&run, "backup")
    );
    sb.write_config("");

    std::fs::remove_dir_all(&live).unwrap();
    let run = rollback(&sb, &["--to", &b2]);
    run.expect(0);
    assert!(run.stdout.contains("install"), "{}", run.stdout);
    assert_eq!(sb.revision().as_deref(), Some(sha(1).as_str()));
    assert_eq!(open_paths(&sb.backup_dir), "", "paths readable by others");
}

/// The lead's phased pipeline dumps the database on one host only, possibly one that took no
/// app backup: `take_database` then makes the backup itself, private, with a manifest; a second
/// dump replaces the first in the manifest (rewritten atomically).
#[tokio::test]
async fn take_database_alone_creates_a_private_backup_and_rewrites_its_manifest() {
    use tj_deploy::backup;
    use tj_deploy::config::{ReleaseId, RemotePath};
    use tj_deploy::remote::layout::Layout;
    use tj_deploy::remote::local::LocalTransport;

    let root = tempfile::tempdir().unwrap();
    sh_ok(&format!("chmod 755 {}", root.path().display()));
    let pg = support::Postgres::start(root.path());
    require_password(&pg);
    let d = root.path().join("app");
    std::fs::create_dir_all(d.join("shared")).unwrap();
    let url = format!(
        "postgresql://tj:{}@127.0.0.1:{}/tj?schema=public&connection_limit=5",
        support::PG_PASSWORD,
        pg.port
    );
    std::fs::write(d.join("shared/.env"), format!("DATABASE_URL={url}\n")).unwrap();
    let l = Layout::new(
        RemotePath::parse("deploy_dir", d.to_str().unwrap()).unwrap(),
        RemotePath::parse("backup_dir", root.path().join("backups").to_str().unwrap()).unwrap(),
    );
    let t = LocalTransport::new("local");
    let id = ReleaseId::parse("id", "20260118_143000").unwrap();
    let m = backup::take_database(&t, &l, id, "staging").await.expect("dump");
    assert_eq!(m.kind, "pre-deploy");
    assert_eq!(m.release, None);
    assert_eq!(m.files.len(), 1);
    let dir = root.path().join("backups/20260118_143000");
    let listed = backup::manifests(&t, &l).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].1.files[0].name, "db.dump");
    let again = backup::take_database(&t, &l, id, "staging").await.expect("second dump");
    assert_eq!(again.files.len(), 1, "one db.dump entry");
    assert_eq!(open_paths(&root.path().join("backups")), "");
    assert!(!dir.join(".manifest.json.tmp").exists());

    // A wrong password fails with pg_dump's words and leaves nothing behind.
    std::fs::write(
        d.join("shared/.env"),
        format!("DATABASE_URL={}\n", url.replace(support::PG_PASSWORD, "nope")),
    )
    .unwrap();
    let other = ReleaseId::parse("id", "20260118_143001").unwrap();
    let err = backup::take_database(&t, &l, other, "staging").await.unwrap_err();
    assert!(err.message.contains("pg_dump"), "{}", err.message);
    assert!(!err.message.contains("nope"), "{}", err.message);
    assert!(!root.path().join("backups/20260118_143001").exists());
}
