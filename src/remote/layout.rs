//! The remote paths of DESIGN.md §4, in one place: releases, `current`, `shared`, the lock,
//! uploaded packages, the deployment log and backups.

use crate::config::{ReleaseId, RemotePath};

#[derive(Debug, Clone)]
pub struct Layout {
    pub deploy_dir: RemotePath,
    pub backup_dir: RemotePath,
}

impl Layout {
    pub fn new(deploy_dir: RemotePath, backup_dir: RemotePath) -> Self {
        Layout { deploy_dir, backup_dir }
    }
    pub fn releases(&self) -> String {
        self.deploy_dir.join("releases")
    }
    pub fn release(&self, id: ReleaseId) -> String {
        format!("{}/{id}", self.releases())
    }
    /// What `current` points at for `id`: relative, so the tree can be moved or mounted elsewhere.
    pub fn release_link_target(id: ReleaseId) -> String {
        format!("releases/{id}")
    }
    pub fn current(&self) -> String {
        self.deploy_dir.join("current")
    }
    pub fn shared(&self) -> String {
        self.deploy_dir.join("shared")
    }
    pub fn meta(&self) -> String {
        self.deploy_dir.join(".tj-deploy")
    }
    pub fn lock(&self) -> String {
        format!("{}/lock", self.meta())
    }
    pub fn packages(&self) -> String {
        format!("{}/packages", self.meta())
    }
    pub fn package(&self, sha256: &str) -> String {
        format!("{}/{sha256}.tar.gz", self.packages())
    }
    /// The ledger of releases marked bad: one file per release, kept after the release is pruned.
    pub fn bad_ledger(&self) -> String {
        format!("{}/bad", self.meta())
    }
    pub fn bad(&self, id: ReleaseId) -> String {
        format!("{}/{id}", self.bad_ledger())
    }
    /// Installed dependencies, one directory per dependency key (src/deps.rs).
    pub fn deps(&self) -> String {
        format!("{}/deps", self.meta())
    }
    pub fn log(&self) -> String {
        format!("{}/deployments.log", self.meta())
    }
    pub fn backup(&self, id: ReleaseId) -> String {
        self.backup_dir.join(&id.to_string())
    }
    /// Where a backup is written before it is complete; dot-named so listings skip it.
    pub fn backup_partial(&self, id: ReleaseId) -> String {
        self.backup_dir.join(&format!(".{id}.partial"))
    }
}
