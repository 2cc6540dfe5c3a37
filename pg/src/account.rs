//! Which operating-system user runs the cluster.
//!
//! PostgreSQL refuses to run as root. When floe runs as root (containers, CI,
//! this project's own machines) the cluster runs as the `postgres` user, or
//! `nobody` where that does not exist; otherwise as the current user.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::{Gid, Uid, User};

use crate::Error;

/// The user the server processes run as.
#[derive(Clone, Debug)]
pub struct Account {
    /// Login name, for messages.
    pub name: String,
    /// User id.
    pub uid: Uid,
    /// Primary group id.
    pub gid: Gid,
    /// Whether floe must switch to this user when it spawns server processes.
    pub switch: bool,
}

impl Account {
    /// The current user when unprivileged; an unprivileged system user when root.
    pub fn choose() -> Result<Self, Error> {
        let me = Uid::effective();
        if !me.is_root() {
            let name = User::from_uid(me)
                .ok()
                .flatten()
                .map_or_else(|| me.to_string(), |u| u.name);
            return Ok(Self {
                name,
                uid: me,
                gid: Gid::effective(),
                switch: false,
            });
        }
        for name in ["postgres", "nobody"] {
            if let Ok(Some(user)) = User::from_name(name) {
                return Ok(Self {
                    name: user.name,
                    uid: user.uid,
                    gid: user.gid,
                    switch: true,
                });
            }
        }
        Err(Error::NoUnprivilegedUser)
    }

    /// Fails with a clear message when this user cannot reach `dir`: every
    /// ancestor must be searchable by it.
    pub fn check_reachable(&self, dir: &Path) -> Result<(), Error> {
        if !self.switch {
            return Ok(());
        }
        for ancestor in dir.ancestors().skip(1) {
            let Ok(meta) = std::fs::metadata(ancestor) else {
                continue;
            };
            let mode = meta.mode();
            let searchable = if meta.uid() == self.uid.as_raw() {
                mode & 0o100 != 0
            } else if meta.gid() == self.gid.as_raw() {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !searchable {
                return Err(Error::Unreachable {
                    user: self.name.clone(),
                    dir: dir.to_path_buf(),
                    blocker: ancestor.to_path_buf(),
                });
            }
        }
        Ok(())
    }
}
