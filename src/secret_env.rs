//! The environment variables that carry tj-deploy's secrets, and keeping them away from every
//! process tj-deploy starts (`git`, `ssh` and its ProxyCommand, the local transport's scripts
//! and hooks): a hook or a compromised build tool must not read the deploy key or the tokens.

/// Every variable a secret may arrive in (DESIGN.md §2).
pub const NAMES: [&str; 6] = [
    "INPUT_SSH-KEY",
    "INPUT_GITHUB-TOKEN",
    "GITHUB_TOKEN",
    "TJ_SSH_KEY",
    "INPUT_SLACK-WEBHOOK",
    "SLACK_WEBHOOK_URL",
];

/// Removes the secret variables from a command's environment.
pub fn scrub(c: &mut std::process::Command) -> &mut std::process::Command {
    for name in NAMES {
        c.env_remove(name);
    }
    c
}

/// [`scrub`] for an async command.
pub fn scrub_async(c: &mut tokio::process::Command) -> &mut tokio::process::Command {
    for name in NAMES {
        c.env_remove(name);
    }
    c
}

/// Removes the secret variables from this process's own environment, once they were read.
/// The `openssh` crate starts the `ssh` master itself and offers no way to shape its
/// environment, so this is what keeps the secrets out of `ssh` and any ProxyCommand it runs.
///
/// Call it before any other thread exists (first thing in `main`).
pub fn scrub_own() {
    for name in NAMES {
        if std::env::var_os(name).is_some() {
            // SAFETY: called from `main` before the async runtime or any other thread starts,
            // so nothing reads the environment concurrently.
            unsafe { std::env::remove_var(name) };
        }
    }
}
