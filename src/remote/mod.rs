//! Running commands on a host: the [`Transport`] trait and its two implementations, SSH
//! ([`ssh`]) and this machine ([`local`], for the sandbox demo and fast tests). What to run is
//! decided elsewhere, as plain [`commands::Script`] values.

pub mod commands;
pub mod layout;
pub mod local;
pub mod ssh;

use std::future::Future;
use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::error::{Context, Error, Result};
pub use commands::Script;

/// What a remote script printed and how it ended.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// `None` when the script was killed or the connection dropped.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
    /// The last lines of stderr (or stdout), for an error message.
    pub fn tail(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(3)..].join(" | ")
    }
    /// Turns a non-zero exit into an error naming `what`.
    pub fn check(self, what: &str) -> Result<Output> {
        if self.success() {
            return Ok(self);
        }
        let how = match self.code {
            Some(c) => format!("exit {c}"),
            None => "killed or disconnected".to_string(),
        };
        let tail = self.tail();
        Err(Error::failed(if tail.is_empty() {
            format!("{what} failed ({how})")
        } else {
            format!("{what} failed ({how}): {tail}")
        }))
    }
}

/// How a script's output is handled while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Keep it for parsing; print nothing.
    Capture,
    /// Print each line as it comes (inside the step's log group) and keep it.
    Stream,
}

/// Put in front of every script that [`Transport::run`] starts. A watcher holds the channel's
/// stdin; when that closes while the script still runs (tj-deploy was cancelled, killed, or lost
/// the connection), it terminates the script's whole process group. Without it a cancelled
/// step goes on changing the host behind the cleanup: an `npm ci` keeps writing into a release
/// that is being removed, or a step whose shell started late runs after the failure path. The
/// TERM trap makes the script leave through its EXIT trap, which removes what it half made. The
/// script itself reads /dev/null, so a command that prompts still sees end of input.
pub(crate) const WATCHDOG: &str = "trap 'exit 143' TERM HUP INT
exec 3<&0 </dev/null
{ cat <&3 >/dev/null 2>&1; kill -0 $$ 2>/dev/null && kill -TERM 0; } >/dev/null 2>&1 &
exec 3<&-
";

/// Put before the [`WATCHDOG`] when the script carries a secret line: the shell's `read`
/// builtin takes exactly one line (byte by byte on a pipe) into a plain shell variable, which
/// no other process sees; the watchdog then holds the rest of stdin as usual.
const READ_SECRET: &str = "trap 'exit 143' TERM HUP INT
IFS= read -r TJ_SECRET || TJ_SECRET=
";

/// `script`'s text behind the [`WATCHDOG`], for [`Transport::run`] (not for the upload, whose
/// stdin is the package).
pub(crate) fn watched(script: &Script) -> String {
    let read = if script.secret_input().is_some() {
        READ_SECRET
    } else {
        ""
    };
    format!("{read}{WATCHDOG}{}", script.text())
}

/// Writes the script's secret line (if any) to its stdin, which stays open for the watchdog.
pub(crate) async fn send_secret(script: &Script, stdin: Option<&mut (impl AsyncWrite + Unpin)>) {
    if let (Some(line), Some(stdin)) = (script.secret_input(), stdin) {
        // A failed write leaves the script an empty line: its own step then fails and says why.
        let _ = stdin.write_all(line.as_bytes()).await;
        let _ = stdin.flush().await;
    }
}

/// A host we can run scripts on.
pub trait Transport: Send + Sync {
    /// The host as the user named it, for messages.
    fn name(&self) -> &str;
    /// Runs `script` with `sh -c` behind [`WATCHDOG`]: stdin is held open until it ends, and the
    /// script is stopped on the host if this future is dropped.
    fn run(&self, script: &Script, mode: Mode) -> impl Future<Output = Result<Output>> + Send;
    /// Runs `script` with the contents of `local` on its stdin; `progress` gets byte counts.
    fn run_with_file(
        &self,
        script: &Script,
        local: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> impl Future<Output = Result<Output>> + Send;
}

/// Collects a child's stdout and stderr concurrently, printing lines in [`Mode::Stream`].
pub(crate) async fn collect(
    stdout: Option<impl AsyncRead + Unpin>,
    stderr: Option<impl AsyncRead + Unpin>,
    mode: Mode,
    host: &str,
) -> (String, String) {
    async fn read_all(r: Option<impl AsyncRead + Unpin>, mode: Mode, host: &str) -> String {
        let Some(r) = r else { return String::new() };
        let mut lines = BufReader::new(r).lines();
        let mut all = String::new();
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    if mode == Mode::Stream {
                        crate::ui::remote_line(host, &line);
                    }
                    all.push_str(&line);
                    all.push('\n');
                }
                Ok(None) => break,
                // Non-UTF-8 output: keep what we have; the exit status decides success.
                Err(_) => break,
            }
        }
        all
    }
    let both = tokio::join!(read_all(stdout, mode, host), read_all(stderr, mode, host));
    if mode == Mode::Stream {
        crate::ui::end_foreign();
    }
    both
}

/// Copies `local` into a child's stdin, then closes it so the remote `cat` sees EOF.
pub(crate) async fn feed(
    mut stdin: impl AsyncWrite + Unpin,
    local: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(local)
        .await
        .context(format!("open {}", local.display()))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).await.context(format!("read {}", local.display()))?;
        if n == 0 {
            break;
        }
        stdin
            .write_all(&buf[..n])
            .await
            .context("upload: write to the remote side")?;
        progress(n as u64);
    }
    stdin.shutdown().await.context("upload: close the remote side")?;
    Ok(())
}

impl<T: Transport> Transport for &T {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn run(&self, script: &Script, mode: Mode) -> impl Future<Output = Result<Output>> + Send {
        (**self).run(script, mode)
    }
    fn run_with_file(
        &self,
        script: &Script,
        local: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> impl Future<Output = Result<Output>> + Send {
        (**self).run_with_file(script, local, progress)
    }
}

/// Either transport, so callers need not be generic over them.
pub enum AnyTransport {
    Local(local::LocalTransport),
    Ssh(Box<ssh::SshTransport>),
}

impl AnyTransport {
    pub async fn close(self) {
        if let AnyTransport::Ssh(t) = self {
            t.close().await;
        }
    }
}

impl Transport for AnyTransport {
    fn name(&self) -> &str {
        match self {
            AnyTransport::Local(t) => t.name(),
            AnyTransport::Ssh(t) => t.name(),
        }
    }
    async fn run(&self, script: &Script, mode: Mode) -> Result<Output> {
        match self {
            AnyTransport::Local(t) => t.run(script, mode).await,
            AnyTransport::Ssh(t) => t.run(script, mode).await,
        }
    }
    async fn run_with_file(&self, script: &Script, local: &Path, progress: &(dyn Fn(u64) + Sync)) -> Result<Output> {
        match self {
            AnyTransport::Local(t) => t.run_with_file(script, local, progress).await,
            AnyTransport::Ssh(t) => t.run_with_file(script, local, progress).await,
        }
    }
}
