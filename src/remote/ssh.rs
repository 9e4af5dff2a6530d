//! SSH transport on the `openssh` crate (native mux: one master connection per host, a cheap
//! channel per command). Everything the `ssh` client reads is passed explicitly: a generated
//! config (strict host key checking, our known_hosts only, our key only, keep-alives), written
//! with the key into a private temp dir that is removed when the [`SshContext`] is dropped.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};

use crate::config::{EnvConfig, HostSpec, SshSecrets};
use crate::error::{Context, Error, Result};
use crate::remote::{Mode, Output, Script, Transport, collect, send_secret, watched};
use crate::ui;

/// How long an orphaned ssh master (tj-deploy was SIGKILLed) lingers once its channels close.
const MASTER_IDLE: std::num::NonZeroUsize = std::num::NonZeroUsize::new(60).expect("non-zero");

/// The private files ssh needs for one run.
pub struct SshContext {
    dir: tempfile::TempDir,
    config_file: PathBuf,
    connect_timeout: Duration,
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .context(format!("create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .context(format!("write {}", path.display()))?;
    // ssh rejects a key whose last line has no newline.
    if !text.ends_with('\n') {
        f.write_all(b"\n").context(format!("write {}", path.display()))?;
    }
    Ok(())
}

/// ssh_config values with spaces need double quotes; a `"` cannot be expressed at all.
fn config_value(input: &str, p: &Path) -> Result<String> {
    let s = p
        .to_str()
        .ok_or_else(|| Error::invalid(format!("{input}: {} is not UTF-8", p.display())))?;
    if s.contains('"') || s.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{input}: {s:?} cannot be passed to ssh (quote or control character)"
        )));
    }
    Ok(format!("\"{s}\""))
}

impl SshContext {
    /// Checks the secrets and writes the key, known_hosts and ssh config (exit 2 if unusable).
    pub fn prepare(secrets: &SshSecrets, env: &EnvConfig, home: Option<&Path>) -> Result<Self> {
        // A short base keeps the mux socket path under the 108-byte limit.
        let dir = tempfile::Builder::new()
            .prefix(".tj")
            .tempdir_in("/tmp")
            .context("create a private directory for ssh")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).context("chmod ssh directory")?;

        let key_file = match (&secrets.key, &secrets.key_file) {
            (Some(key), _) => {
                let p = dir.path().join("id");
                write_private(&p, key.expose())?;
                Some(p)
            }
            (None, Some(p)) => {
                std::fs::metadata(p).map_err(|e| Error::invalid(format!("ssh-key-file: {}: {e}", p.display())))?;
                Some(p.clone())
            }
            (None, None) => None,
        };
        let known_hosts = match (&secrets.known_hosts, &secrets.known_hosts_file) {
            (Some(text), _) => {
                let p = dir.path().join("known_hosts");
                write_private(&p, text)?;
                p
            }
            (None, Some(p)) => {
                std::fs::metadata(p).map_err(|e| Error::invalid(format!("known-hosts-file: {}: {e}", p.display())))?;
                p.clone()
            }
            (None, None) => {
                let p = home.map(|h| h.join(".ssh/known_hosts"));
                match p {
                    Some(p) if p.is_file() => p,
                    _ => {
                        return Err(Error::invalid(
                            "known-hosts: none given and ~/.ssh/known_hosts does not exist (pass --known-hosts-file, TJ_KNOWN_HOSTS or the input 'known-hosts'; get the line with ssh-keyscan)",
                        ));
                    }
                }
            }
        };
        let mut config = String::new();
        config.push_str("Host *\n  BatchMode yes\n  StrictHostKeyChecking yes\n  GlobalKnownHostsFile /dev/null\n");
        config.push_str(&format!(
            "  UserKnownHostsFile {}\n",
            config_value("known-hosts-file", &known_hosts)?
        ));
        if let Some(k) = &key_file {
            config.push_str(&format!(
                "  IdentitiesOnly yes\n  IdentityFile {}\n",
                config_value("ssh-key-file", k)?
            ));
        }
        config.push_str("  ServerAliveInterval 10\n  ServerAliveCountMax 3\n  LogLevel ERROR\n");
        if let Some(user_config) = &env.ssh_config {
            std::fs::metadata(user_config)
                .map_err(|e| Error::invalid(format!("ssh_config: {}: {e}", user_config.display())))?;
            config.push_str(&format!(
                "Include {}\n",
                config_value("ssh_config", &std::path::absolute(user_config).context("ssh_config")?)?
            ));
        }
        let config_file = dir.path().join("config");
        write_private(&config_file, &config)?;
        Ok(SshContext {
            dir,
            config_file,
            connect_timeout: env.connect_timeout,
        })
    }

    fn builder(&self, host: &HostSpec) -> SessionBuilder {
        let mut b = SessionBuilder::default();
        b.known_hosts_check(KnownHosts::Strict)
            .config_file(&self.config_file)
            .control_directory(self.dir.path())
            .connect_timeout(self.connect_timeout)
            // If we are killed before closing the session, the master must not live on.
            .control_persist(ControlPersist::IdleFor(MASTER_IDLE))
            .server_alive_interval(Duration::from_secs(10));
        if let Some(u) = &host.user {
            b.user(u.clone());
        }
        if let Some(p) = host.port {
            b.port(p);
        }
        b
    }

    pub async fn connect(&self, host: &HostSpec) -> Result<SshTransport> {
        let builder = self.builder(host);
        let session = open(&builder, host, self.connect_timeout).await?;
        Ok(SshTransport {
            name: host.to_string(),
            session: Mutex::new(Arc::new(session)),
            redial: Redial {
                builder,
                host: host.clone(),
                timeout: self.connect_timeout,
            },
            redialed: AtomicBool::new(false),
        })
    }
}

async fn open(builder: &SessionBuilder, host: &HostSpec, timeout: Duration) -> Result<Session> {
    let name = host.to_string();
    match tokio::time::timeout(timeout + Duration::from_secs(5), builder.connect_mux(&host.host)).await {
        Err(_) => Err(Error::failed(format!("connect {name}: timed out after {timeout:?}"))),
        Ok(Err(e)) => Err(Error::failed(format!("connect {name}: {}", describe(&e)))),
        Ok(Ok(s)) => Ok(s),
    }
}

/// What it takes to connect again after the connection dropped.
struct Redial {
    builder: SessionBuilder,
    host: HostSpec,
    timeout: Duration,
}

/// An openssh error with its cause (the ssh client's own words, e.g. "Host key verification failed.").
fn describe(e: &openssh::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        if !text.is_empty() && !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

pub struct SshTransport {
    name: String,
    session: Mutex<Arc<Session>>,
    redial: Redial,
    /// A run reconnects once at most: a host that keeps dropping is a failure.
    redialed: AtomicBool,
}

impl SshTransport {
    pub async fn close(self) {
        let session = self.session.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Ok(s) = Arc::try_unwrap(session) {
            let _ = s.close().await;
        }
    }

    fn current(&self) -> Arc<Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn spawn_on(
        &self,
        session: Arc<Session>,
        script: &Script,
        stdin: Option<&std::fs::File>,
    ) -> Result<openssh::Child<Arc<Session>>> {
        let (input, text) = match stdin {
            // Held open by the caller until the script ends: see WATCHDOG.
            None => (Stdio::piped(), watched(script)),
            // The ssh master reads the file itself (its descriptor is passed over the mux
            // socket): no copy through this process, and a retry starts from the beginning.
            Some(f) => {
                use std::io::Seek as _;
                let mut f = f.try_clone().context("upload: duplicate the package's descriptor")?;
                f.rewind().context("upload: rewind the package")?;
                (Stdio::from(f), script.text().to_string())
            }
        };
        let mut cmd = session.arc_command("sh");
        cmd.arg("-c")
            .arg(text)
            .stdin(input)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn()
            .await
            .map_err(|e| Error::failed(format!("{}: {}: {}", self.name, script.label, describe(&e))))
    }

    async fn run_once(&self, script: &Script, mode: Mode) -> Result<Output> {
        let mut child = self.spawn(script, None).await?;
        // Held until the script has ended; dropping it (cancellation) stops the script.
        let mut stdin = child.stdin().take();
        send_secret(script, stdin.as_mut()).await;
        let (stdout, stderr) = collect(child.stdout().take(), child.stderr().take(), mode, &self.name).await;
        let code = match child.wait().await {
            Ok(status) => status.code(),
            Err(_) => None,
        };
        Ok(Output { code, stdout, stderr })
    }

    /// Starts `script`; when the connection has dropped, reconnects once (the host may be back
    /// after a blip) so that at least the cleanup of a failed step can run.
    async fn spawn(&self, script: &Script, stdin: Option<&std::fs::File>) -> Result<openssh::Child<Arc<Session>>> {
        let session = self.current();
        let first = self.spawn_on(session.clone(), script, stdin).await;
        if first.is_ok() || session.check().await.is_ok() || self.redialed.swap(true, Ordering::SeqCst) {
            return first;
        }
        ui::warn(&format!("{}: the SSH connection dropped; reconnecting once", self.name));
        let mut last = None;
        for _ in 0..5 {
            match open(&self.redial.builder, &self.redial.host, self.redial.timeout).await {
                Ok(s) => {
                    let s = Arc::new(s);
                    *self.session.lock().unwrap_or_else(|p| p.into_inner()) = s.clone();
                    return self.spawn_on(s, script, stdin).await;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Err(last.unwrap_or_else(|| Error::failed(format!("{}: reconnect failed", self.name))))
    }
}

impl Transport for SshTransport {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, script: &Script, mode: Mode) -> Result<Output> {
        let out = self.run_once(script, mode).await?;
        if out.code.is_some() || !script.is_repeatable() {
            return Ok(out);
        }
        // No exit status: the connection most likely died under the command, possibly before
        // the master noticed, so this command was sent into a dead connection. A repeatable one
        // (the failure path's cleanup) gets one more try once the master is known to be gone.
        let session = self.current();
        for _ in 0..20 {
            if session.check().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.run_once(script, mode).await
    }

    async fn run_with_file(&self, script: &Script, local: &Path, progress: &(dyn Fn(u64) + Sync)) -> Result<Output> {
        let file = std::fs::File::open(local).context(format!("open {}", local.display()))?;
        let mut child = self.spawn(script, Some(&file)).await?;
        // The master and we share the descriptor's offset: it says how far the upload got.
        let done = AtomicBool::new(false);
        let watch = async {
            use std::io::Seek as _;
            let mut reported = 0;
            loop {
                let finished = done.load(Ordering::SeqCst);
                if let Ok(pos) = (&file).stream_position()
                    && pos > reported
                {
                    progress(pos - reported);
                    reported = pos;
                }
                if finished {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let output = async {
            let out = collect(child.stdout().take(), child.stderr().take(), Mode::Capture, &self.name).await;
            done.store(true, Ordering::SeqCst);
            out
        };
        let ((), (stdout, stderr)) = tokio::join!(watch, output);
        let code = match child.wait().await {
            Ok(status) => status.code(),
            Err(_) => None,
        };
        Ok(Output { code, stdout, stderr })
    }
}
