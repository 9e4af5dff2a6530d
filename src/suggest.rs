//! "Did you mean …?": the closest valid name to a mistyped one (config key, environment,
//! command), by Levenshtein distance (the `strsim` crate, already in the tree through clap).

/// The candidate nearest to `word`, when it is near enough to be a likely typo: at most 2 edits
/// (3 for names of 10 characters or more), and fewer edits than the word is long, so `prod`
/// does not suggest `dev`. Case is ignored; ties go to the first candidate.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let limit = if lower.chars().count() >= 10 { 3 } else { 2 };
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (strsim::levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|&(d, _)| d <= limit && d < lower.chars().count())
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// `" (did you mean X?)"`-style hint, or an empty string when nothing is close.
pub fn hint<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates)
        .map(|c| format!("did you mean {c}? "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_key() {
        let keys = ["keep_releases", "keep_backups", "required_checks", "health_url"];
        assert_eq!(closest("keep_release", keys), Some("keep_releases"));
        assert_eq!(closest("keep_backup", keys), Some("keep_backups"));
        assert_eq!(closest("required_check", keys), Some("required_checks"));
        assert_eq!(closest("helth_url", keys), Some("health_url"));
        assert_eq!(closest("Health_URL", keys), Some("health_url"));
    }

    #[test]
    fn nothing_close_means_no_suggestion() {
        assert_eq!(closest("bogus", ["keep_releases", "health_url"]), None);
        assert_eq!(closest("prod", ["staging", "production"]), None);
        assert_eq!(closest("x", ["a", "b"]), None);
        assert_eq!(closest("staging", ["staging"]), None);
        assert_eq!(hint("bogus", ["deploy"]), "");
    }

    #[test]
    fn environments_and_commands() {
        assert_eq!(closest("stagin", ["production", "staging"]), Some("staging"));
        assert_eq!(closest("prodution", ["production", "staging"]), Some("production"));
        assert_eq!(closest("rollbak", ["deploy", "rollback", "backups"]), Some("rollback"));
        assert_eq!(hint("deplyo", ["deploy", "check"]), "did you mean deploy? ");
    }
}
