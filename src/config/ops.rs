//! The flags of the day-two commands (`setup`, `status`, `logs`, `restart`, `history`,
//! `stats`), carried as one value from the command line to the command that reads them.

/// Flags of the operations commands; each command reads its own and ignores the rest.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpsFlags {
    /// `history --limit N`.
    pub limit: Option<usize>,
    /// `stats --since 30d`.
    pub since: Option<String>,
    /// `logs --lines N`.
    pub lines: Option<usize>,
    /// `logs --err`.
    pub err: bool,
    /// `logs --grep TEXT`.
    pub grep: Option<String>,
    /// `logs --follow`.
    pub follow: bool,
    /// `restart --hard`.
    pub hard: bool,
    /// `setup --check`.
    pub check: bool,
    /// `setup --adopt`.
    pub adopt: bool,
}
