//! Publishing one output: the commit protocol every stored output goes through, in one place. `Store::begin`
//! refuses links below the roots and opens a temp file beside the output; the producer streams into its sink;
//! `Publication::commit` then checks the new bytes where they must be known ones (a copy, a pull: their SHA-256),
//! removes the old manifest durably (so no manifest ever describes bytes other than the ones beside it), renames
//! the new file into place, and writes the new manifest last. `abandon` (or dropping it) leaves no trace of a first build. The
//! caller decides what to build and writes the manifest's content; this module owns only the order of the steps
//! (and their failpoints, which the crash tests use).

use super::{Sink, Store, Written};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// An output being written: its temp file, and where it and its manifest go.
pub(crate) struct Publication {
    sink: Sink,
    manifest: PathBuf,
    /// Directories this publication created (removed again if it is abandoned while empty).
    created: Vec<PathBuf>,
}

impl Store {
    /// Starts publishing `output` (described by `manifest`): both paths guarded, a temp file opened.
    pub(crate) fn begin(&self, output: &Path, manifest: &Path) -> Result<Publication> {
        self.guard(output)?;
        self.guard(manifest)?;
        let created = super::missing_dirs(output, &self.tensors);
        let sink = Sink::create(output)?;
        Ok(Publication { sink, manifest: manifest.to_path_buf(), created })
    }
}

impl Publication {
    /// Where the producer streams the output.
    pub(crate) fn sink(&mut self) -> &mut Sink {
        &mut self.sink
    }

    /// Nothing is stored: the temp file goes, and the directories a first build created.
    pub(crate) fn abandon(self) {
        let created = self.created.clone();
        drop(self);
        super::remove_empty_dirs(&created);
    }

    /// Commits the output — the old manifest removed durably, the file renamed into place (refused unless it
    /// hashes to `expect`'s SHA-256, for a copy of `expect`'s file) — then writes the manifest `manifest`
    /// makes from what was written.
    pub(crate) fn commit(
        self,
        expect: Option<(&str, &Path)>,
        manifest: impl FnOnce(&Written) -> Vec<u8>,
    ) -> Result<Written> {
        self.commit_if(
            |_, got| match expect {
                Some((want, from)) if got != want => Err(Error::checkpoint(
                    from,
                    format!(
                        "its bytes hash to {got}, not the SHA-256 {want} its manifest records, so they were not \
                         shared; nothing was stored. Check it with `gamma-run verify` and rebuild it with --force"
                    ),
                )),
                _ => Ok(()),
            },
            manifest,
        )
    }

    /// `commit`, with the bytes' size and SHA-256 checked by `check` before anything is replaced (a pulled
    /// output must be the bytes its remote manifest names): refused, nothing changes, the temp file goes.
    pub(crate) fn commit_if(
        self,
        check: impl FnOnce(u64, &str) -> Result<()>,
        manifest: impl FnOnce(&Written) -> Vec<u8>,
    ) -> Result<Written> {
        // The old manifest goes only once the new bytes passed `check` (a refused copy or pull leaves the output
        // and its manifest as they were), and before the rename (no manifest ever describes other bytes).
        let manifest_path = self.manifest.clone();
        let written = self.sink.commit_checked(|size, sha| {
            check(size, sha)?;
            super::remove_durably(&manifest_path)?;
            super::failpoint("after-manifest-removed");
            Ok(())
        })?;
        super::failpoint("before-manifest");
        super::write_atomic(&self.manifest, &manifest(&written))?;
        Ok(written)
    }
}
