//! Local transport: runs the same scripts on this machine with `sh -c`, no SSH. It powers the
//! sandbox demo and tests that do not need a network hop.

use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

use crate::error::{Context, Error, Result};
use crate::remote::{Mode, Output, Script, Transport, collect, feed, send_secret, watched};

pub struct LocalTransport {
    name: String,
}

impl LocalTransport {
    pub fn new(name: &str) -> Self {
        LocalTransport { name: name.to_string() }
    }
}

impl Transport for LocalTransport {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, script: &Script, mode: Mode) -> Result<Output> {
        let mut child = crate::secret_env::scrub_async(&mut Command::new("sh"))
            .arg("-c")
            .arg(watched(script))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: the watchdog's `kill 0` must not reach tj-deploy.
            .process_group(0)
            .spawn()
            .context(format!("{}: run sh", script.label))?;
        // Held until the script has ended; dropping it (cancellation) stops the script.
        let mut stdin = child.stdin.take();
        send_secret(script, stdin.as_mut()).await;
        let (stdout, stderr) = collect(child.stdout.take(), child.stderr.take(), mode, &self.name).await;
        let status = child.wait().await.context(format!("{}: wait", script.label))?;
        Ok(Output {
            code: status.code(),
            stdout,
            stderr,
        })
    }

    async fn run_with_file(&self, script: &Script, local: &Path, progress: &(dyn Fn(u64) + Sync)) -> Result<Output> {
        let mut child = crate::secret_env::scrub_async(&mut Command::new("sh"))
            .arg("-c")
            .arg(script.text())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context(format!("{}: run sh", script.label))?;
        let stdin = child.stdin.take().ok_or_else(|| Error::failed("upload: no stdin"))?;
        let (fed, (stdout, stderr)) = tokio::join!(
            feed(stdin, local, progress),
            collect(child.stdout.take(), child.stderr.take(), Mode::Capture, &self.name)
        );
        let status = child.wait().await.context(format!("{}: wait", script.label))?;
        let out = Output {
            code: status.code(),
            stdout,
            stderr,
        };
        if let Err(e) = fed
            && out.success()
        {
            return Err(e);
        }
        Ok(out)
    }
}
