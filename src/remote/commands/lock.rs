//! The deploy lock on a host: take it (a directory renamed into place with its owner inside),
//! show it, release it by token, remove it for `unlock`.

use super::*;
use crate::remote::layout::Layout;

/// Takes the host's deploy lock and records its owner in one atomic step: owner.json is written
/// into a private directory that is then renamed onto `lock` (`mv -T`, i.e. rename(2), which
/// fails when `lock` exists and is not empty). So a lock is never ownerless, even when we die
/// halfway; a lock directory is never empty (an empty one, from an older tj-deploy that died
/// between its mkdir and its write, is simply taken over). Prints `acquired`, or `held`
/// followed by the holder's owner.json.
pub fn lock_acquire(l: &Layout, owner_json: &str) -> Script {
    with_dirs("lock", l)
        .var("OWNER", owner_json)
        .line("mkdir -p \"$D/.tj-deploy\"")
        // Others may not plant packages or logs; the lock names the actor and the run.
        .line("chmod go-w \"$D/.tj-deploy\" 2>/dev/null || true")
        .line("umask 077")
        // Leftovers of an acquirer that died between its mkdir and its rename.
        .line("find \"$D/.tj-deploy\" -maxdepth 1 -name '.lock.*.tmp' -mmin +60 -exec rm -rf {} + 2>/dev/null || true")
        .line("T=\"$D/.tj-deploy/.lock.$$.tmp\"")
        .line("rm -rf \"$T\"")
        .line("mkdir \"$T\"")
        .line("printf '%s\\n' \"$OWNER\" > \"$T/owner.json\"")
        .line("if mv -T \"$T\" \"$D/.tj-deploy/lock\" 2>/dev/null; then")
        .line("  echo acquired")
        .line("else")
        .line("  rm -rf \"$T\"")
        .line("  echo held")
        .line("  cat \"$D/.tj-deploy/lock/owner.json\" 2>/dev/null || true")
        .line("fi")
}

/// Prints `held` and the lock's owner.json when a lock is there; changes nothing.
pub fn lock_show(l: &Layout) -> Script {
    with_dirs("lock", l)
        .line("if [ -d \"$D/.tj-deploy/lock\" ]; then")
        .line("  echo held")
        .line("  cat \"$D/.tj-deploy/lock/owner.json\" 2>/dev/null || true")
        .line("fi")
        .repeatable()
}

/// Releases the lock only if it still carries our token (an `unlock` may have cleared it and
/// another run taken it since).
pub fn lock_release(l: &Layout, token: &str) -> Script {
    with_dirs("unlock", l)
        .var("TOKEN", token)
        .line("if [ -f \"$D/.tj-deploy/lock/owner.json\" ] && grep -qF -- \"$TOKEN\" \"$D/.tj-deploy/lock/owner.json\"; then")
        .line("  rm -rf \"$D/.tj-deploy/lock\"")
        .line("fi")
        .repeatable()
}

/// Prints the lock owner (or nothing) and removes the lock: the `unlock` command.
pub fn lock_force_remove(l: &Layout) -> Script {
    with_dirs("unlock", l)
        .line("if [ -d \"$D/.tj-deploy/lock\" ]; then")
        .line("  echo held")
        .line("  cat \"$D/.tj-deploy/lock/owner.json\" 2>/dev/null || true")
        .line("  rm -rf \"$D/.tj-deploy/lock\"")
        .line("fi")
}
