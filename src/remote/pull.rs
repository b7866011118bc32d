//! Pulling an output: the remote's manifest read and checked (self-consistent, the fingerprint asked for, the frame
//! and inputs this workspace has), then its bytes streamed into the local store's commit protocol, hashed while
//! written, and kept only if they are exactly the bytes that manifest names. Nothing pulled is used unverified,
//! and nothing half-pulled is ever visible. What the local manifest then says is the runner's to write.

use super::{Remote, describe, index_key, object_key};
use crate::error::{Error, Result};
use crate::manifest::{InputRecord, MAX_MANIFEST_BYTES, Manifest, SCHEMA};
use crate::store::Written;
use object_store::ObjectStoreExt;

/// What the runner asks for: an output with this fingerprint, of this frame, computed from these inputs.
pub(crate) struct Wanted<'a> {
    pub(crate) fingerprint: &'a str,
    pub(crate) frame: &'a str,
    pub(crate) inputs: &'a [InputRecord],
}

/// A remote manifest that passed every check, and where it was read.
pub(crate) struct Candidate {
    pub(crate) manifest: Manifest,
    /// The index object's key (under the remote's URL).
    pub(crate) key: String,
}

impl Remote {
    /// Reads and checks the manifest the remote holds for (`fingerprint`, `sha256`). `Err`: why it is not used.
    pub(crate) fn candidate(&self, want: &Wanted, sha256: &str) -> Result<Candidate> {
        let key = index_key(&self.prefix, want.fingerprint, sha256);
        let name = key.to_string();
        let bad = |why: String| self.error(format!("{name}: {why}; not used"));
        let bytes = self.small(&key, MAX_MANIFEST_BYTES).map_err(|e| bad(e.describe()))?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a gamma-run manifest ({e})")))?;
        check(&m, want, sha256).map_err(bad)?;
        Ok(Candidate { manifest: m, key: name })
    }

    /// Streams the candidate's bytes into `publication` and commits them only if their size and SHA-256 are the
    /// manifest's; `manifest` then writes the local manifest. On any failure nothing is stored.
    pub(crate) fn fetch_into(
        &self,
        c: &Candidate,
        mut publication: crate::store::Publication,
        manifest: impl FnOnce(&Written) -> Vec<u8>,
    ) -> Result<Written> {
        use futures_util::StreamExt;
        let (sha, size) = (c.manifest.output.sha256.as_str(), c.manifest.output.size);
        let key = object_key(&self.prefix, sha);
        let name = key.to_string();
        let bad = |why: String| self.error(format!("{name}: {why}; not used"));
        let got = match self.block_on(self.store.get(&key)) {
            Ok(g) => g,
            Err(e) => {
                publication.abandon();
                return Err(bad(describe(&e)));
            }
        };
        if got.meta.size != size {
            publication.abandon();
            return Err(bad(format!("{} bytes, not the {size} its manifest records", got.meta.size)));
        }
        let mut stream = got.into_stream();
        let mut received = 0u64;
        let streamed = (|| {
            publication.sink().reserve(size)?;
            while let Some(chunk) = self.block_on(stream.next()) {
                let chunk = chunk.map_err(|e| bad(format!("cut off after {received} bytes ({})", describe(&e))))?;
                received += chunk.len() as u64;
                if received > size {
                    return Err(bad(format!("longer than the {size} bytes its manifest records")));
                }
                publication.sink().write(&chunk)?;
            }
            Ok(())
        })();
        if let Err(e) = streamed {
            publication.abandon();
            return Err(e);
        }
        publication.commit_if(
            |got_size, got_sha| {
                if got_size != size {
                    return Err(bad(format!("{got_size} bytes, not the {size} its manifest records (truncated)")));
                }
                if got_sha != sha {
                    return Err(bad(format!("its bytes hash to {got_sha}, not the SHA-256 its manifest records")));
                }
                Ok(())
            },
            manifest,
        )
    }
}

/// Whether the remote manifest `m`, listed under (`want.fingerprint`, `sha256`), may stand for the output wanted:
/// it agrees with itself, has the fingerprint asked for, names the bytes its key names, is of the frame and was
/// computed from inputs with the SHA-256s this workspace has.
fn check(m: &Manifest, want: &Wanted, sha256: &str) -> std::result::Result<(), String> {
    if m.schema != SCHEMA {
        return Err(format!("schema {:?}; this gamma-run reads {SCHEMA:?}", m.schema));
    }
    crate::manifest::consistency::check(m).map_err(|why| format!("the manifest disagrees with itself ({why})"))?;
    if m.fingerprint != want.fingerprint {
        return Err(format!("its fingerprint is {}, not the {} it is listed under", m.fingerprint, want.fingerprint));
    }
    if m.output.sha256 != sha256 {
        return Err(format!("it names bytes {}, not the {sha256} it is listed under", m.output.sha256));
    }
    if m.frame != want.frame {
        return Err(format!("it is a {} output, not {}", m.frame, want.frame));
    }
    crate::manifest::check_output_path(&m.output.path)?;
    for i in want.inputs {
        match m.inputs.iter().find(|r| r.frame == i.frame) {
            Some(r) if r.sha256 == i.sha256 => {}
            Some(r) => {
                return Err(format!(
                    "it was computed from {} {}, not this workspace's {}",
                    i.frame, r.sha256, i.sha256
                ));
            }
            None => return Err(format!("it does not name its input {}", i.frame)),
        }
    }
    if m.inputs.len() != want.inputs.len() {
        return Err("its inputs are not this output's".into());
    }
    Ok(())
}

/// Pulled outputs' errors are warnings in a run (the output is built instead): the message, as one line.
pub(crate) fn why(e: &Error) -> String {
    crate::redact::redact(&e.to_string()).into_owned()
}
