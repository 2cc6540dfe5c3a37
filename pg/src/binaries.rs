//! Finding the machine's PostgreSQL server binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// The folder holding `postgres` and `initdb`: `explicit` when given, else the
/// first of PATH, `pg_config --bindir`, and Debian's `/usr/lib/postgresql/<v>/bin`
/// (newest version first).
pub fn find(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(dir) = explicit {
        return if has_server(dir) {
            Ok(dir.to_path_buf())
        } else {
            Err(Error::BinariesNotFound {
                searched: dir.display().to_string(),
            })
        };
    }
    let mut searched = Vec::new();
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(dir) = pg_config_bindir() {
        candidates.push(dir);
    }
    candidates.extend(debian_bindirs());
    for dir in candidates {
        if has_server(&dir) {
            return Ok(dir);
        }
        searched.push(dir.display().to_string());
    }
    searched.dedup();
    Err(Error::BinariesNotFound {
        searched: if searched.is_empty() {
            "PATH, pg_config, /usr/lib/postgresql".into()
        } else {
            searched.join(", ")
        },
    })
}

fn has_server(dir: &Path) -> bool {
    dir.join("postgres").is_file() && dir.join("initdb").is_file()
}

fn pg_config_bindir() -> Option<PathBuf> {
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// `/usr/lib/postgresql/*/bin`, highest major version first.
fn debian_bindirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    versions.into_iter().map(|(_, p)| p).collect()
}
