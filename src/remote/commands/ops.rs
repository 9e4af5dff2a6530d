//! Read-only scripts of the day-two commands: the deployment log (`history`, `stats`) and a
//! host's state for `status`.

use super::*;
use crate::remote::layout::Layout;

/// Prints the host's deployments.log (nothing when there is none yet).
pub fn read_log(l: &Layout) -> Script {
    with_dirs("read log", l)
        .line("F=\"$D/.tj-deploy/deployments.log\"")
        .line("if [ -f \"$F\" ]; then cat \"$F\"; fi")
        .repeatable()
}

/// Prints `disk <used%> <available KiB>` for the file system holding deploy_dir.
pub fn disk_use(l: &Layout) -> Script {
    with_dirs("disk", l)
        .line("df -Pk \"$D\" | awk 'NR==2 { sub(\"%\", \"\", $5); print \"disk \" $5 \" \" $4 }'")
        .repeatable()
}

/// PM2's logs of the apps `names`: the last `lines` of each worker's files (`--err`: only the
/// error files), or with `follow` every new line (`--raw`) until the run is stopped, filtered by
/// `grep` (a fixed string) when given.
pub fn pm2_logs(names: &[String], lines: usize, err: bool, follow: bool, grep: Option<&str>) -> Script {
    let mut s = Script::new("logs")
        .var("L", &lines.to_string())
        .var("E", if err { "--err" } else { "" })
        .var("G", grep.unwrap_or(""))
        .line("flt() { if [ -n \"$G\" ]; then grep --line-buffered -F -e \"$G\" || true; else cat; fi; }");
    for n in names {
        s = s.var("N", n);
        s = if follow {
            s.line("pm2 logs \"$N\" --raw --lines 0 $E 2>&1 | flt &")
        } else {
            s.line("pm2 logs \"$N\" --nostream --lines \"$L\" $E 2>&1 | flt")
        };
    }
    if follow { s.line("wait") } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_log_quotes_the_deploy_dir() {
        let l = Layout::new(
            crate::config::RemotePath::parse("d", "/srv/my app").unwrap(),
            crate::config::RemotePath::parse("b", "/b").unwrap(),
        );
        let s = read_log(&l);
        assert!(s.text().contains("D='/srv/my app'"));
        assert!(s.is_repeatable());
    }
}
