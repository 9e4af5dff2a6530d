//! The post-deploy watch's one command per host per interval: PM2's process list, the host's
//! memory and CPU counters and the disk of `deploy_dir`, in sections parsed by `watch::sample`;
//! and the PM2 list read around verification, whose restart counts show a crash loop.

use super::*;

/// Marks the start of each section of [`sample`]'s output.
pub const SECTION: &str = "@@tj-watch ";

/// Prints `@@tj-watch meminfo|stat|df|pm2` sections. A missing source prints nothing in its
/// section (reported as no data), so the command itself succeeds whenever the shell runs.
pub fn watch_sample(l: &Layout) -> Script {
    with_dirs("watch", l)
        .line("echo '@@tj-watch meminfo'; cat /proc/meminfo 2>/dev/null || true")
        .line("echo '@@tj-watch stat'; head -n 1 /proc/stat 2>/dev/null || true")
        .line("echo '@@tj-watch df'; df -P -k \"$D\" 2>/dev/null | tail -n 1 || true")
        // Cut on the host to the fields the watch reads: the full list carries every process's
        // environment (DATABASE_URL and all), which must not travel back every interval.
        .var("JS", super::release::PM2_FIELDS_JS)
        .line("echo '@@tj-watch pm2'; if J=$(pm2 jlist 2>/dev/null); then printf '%s\\n' \"$J\" | node -e \"$JS\" 2>/dev/null || true; else echo 'pm2 jlist failed'; fi")
        .repeatable()
}

/// The host's figures before the switch, lighter than [`watch_sample`] (no PM2, no node):
/// memory, the disk of `deploy_dir`, and `/proc/stat` three times a second apart, for two CPU
/// readings of one second each.
pub fn host_figures(l: &Layout) -> Script {
    with_dirs("host figures", l)
        .line("echo '@@tj-watch meminfo'; cat /proc/meminfo 2>/dev/null || true")
        .line("echo '@@tj-watch df'; df -P -k \"$D\" 2>/dev/null | tail -n 1 || true")
        .line("for i in 1 2 3; do [ \"$i\" = 1 ] || sleep 1; echo '@@tj-watch stat'; head -n 1 /proc/stat 2>/dev/null || true; done")
        .repeatable()
}

/// `pm2 jlist`, cut on the host to the fields read (no process environment travels back), for
/// the restart counts around verification. No PM2 or no list: empty output.
pub fn pm2_list(l: &Layout) -> Script {
    with_dirs("pm2 list", l)
        .var("JS", super::release::PM2_FIELDS_JS)
        .line("J=$(pm2 jlist 2>/dev/null || true)")
        .line("printf '%s\\n' \"$J\" | node -e \"$JS\" 2>/dev/null || true")
        .repeatable()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RemotePath;

    #[test]
    fn quotes_the_deploy_dir_and_reads_every_source() {
        let l = Layout::new(
            RemotePath::parse("d", "/srv/my app").unwrap(),
            RemotePath::parse("b", "/srv/backups").unwrap(),
        );
        let t = watch_sample(&l).text().to_string();
        assert!(t.contains("D='/srv/my app'"), "{t}");
        for s in ["meminfo", "stat", "df", "pm2 jlist"] {
            assert!(t.contains(s), "{s}: {t}");
        }
        let t = host_figures(&l).text().to_string();
        assert!(t.contains("D='/srv/my app'"), "{t}");
        assert!(!t.contains("pm2") && !t.contains("node"), "light: {t}");
    }
}
