//! Pushing an output: its bytes to `objects/sha256/<hex>`, then its manifest to `index/<fingerprint>/<hex>.json`,
//! both create-only (a conditional put where the service has one), so concurrent pushers of the same content never
//! conflict and nothing stored is overwritten. The bytes are read back from the workspace and hashed on the way
//! out: bytes that are not what the manifest says are never sent under its name (a multipart upload is aborted).
//! An index entry is written only once its bytes are complete, so none ever points at missing or partial bytes.

use super::{Remote, describe, index_key, object_key};
use crate::error::Result;
use crate::manifest::Manifest;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::path::Path;

/// Bytes sent in one request up to this size; larger outputs go as a multipart upload of parts this size.
const PART: usize = 16 << 20;
/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Sent,
    /// The remote already held this output (same fingerprint and bytes): nothing sent.
    AlreadyThere,
    /// Read from a local directory: not shared (`remote::shareable`), nothing sent.
    NotShared,
}

/// What `push` did with one output.
pub(crate) enum Line {
    Pushed(Pushed),
    /// Not fresh here: not pushed (run it first).
    NotFresh(String),
    Failed(String),
}

impl Remote {
    /// Pushes the output `path` that manifest `m` describes (fresh: the runner judged it so), and its signed
    /// attestation where workspace `root` holds one (`attestation.rs`).
    pub(crate) fn push(&self, m: &Manifest, path: &Path, root: &Path) -> Result<Pushed> {
        if !super::shareable(&m.fingerprint_inputs) {
            return Ok(Pushed::NotShared);
        }
        let pushed = self.push_output(m, path)?;
        if self.push_attestation(root, m)? {
            tracing::debug!("{}/{}: its signed attestation is in the remote", m.name, m.frame);
        }
        Ok(pushed)
    }

    fn push_output(&self, m: &Manifest, path: &Path) -> Result<Pushed> {
        let (fp, sha) = (m.fingerprint.as_str(), m.output.sha256.as_str());
        if self.index().is_ok_and(|i| i.holds(fp).is_some_and(|s| s.contains(sha))) {
            return Ok(Pushed::AlreadyThere);
        }
        self.push_bytes(sha, m.output.size, path)?;
        crate::store::failpoint("push-before-index");
        let key = index_key(&self.prefix, fp, sha);
        Ok(if self.create(&key, m.to_bytes())? { Pushed::Sent } else { Pushed::AlreadyThere })
    }

    /// Writes `bytes` to `key` unless something is there already (then `false`, nothing written): a conditional
    /// put (S3's `If-None-Match: *`, a no-clobber link on a filesystem). Where the service has none (it answers
    /// 501, or `AWS_CONDITIONAL_PUT=disabled`), a look first, then a plain put — racy only between pushers of
    /// the same content-addressed name, whose bytes are the same.
    pub(crate) fn create(&self, key: &object_store::path::Path, bytes: Vec<u8>) -> Result<bool> {
        let payload = PutPayload::from(bytes);
        let failed = |e: object_store::Error| self.error(format!("{key}: cannot write ({})", describe(&e)));
        match self.block_on(self.store.put_opts(key, payload.clone(), create_only())) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) if unconditional(&e) => match self.block_on(self.store.head(key)) {
                Ok(_) => Ok(false),
                Err(object_store::Error::NotFound { .. }) => {
                    self.block_on(self.store.put(key, payload)).map(|_| true).map_err(failed)
                }
                Err(e) => Err(failed(e)),
            },
            Err(e) => Err(failed(e)),
        }
    }

    /// Sends the bytes of `path` (they must hash to `sha`) to their content address, unless it holds them already.
    fn push_bytes(&self, sha: &str, size: u64, path: &Path) -> Result<()> {
        use sha2::Digest;
        use std::io::Read;
        let key = object_key(&self.prefix, sha);
        match self.block_on(self.store.head(&key)) {
            // The same size under the same content address: taken as these bytes (every pull re-hashes them).
            Ok(meta) if meta.size == size => return Ok(()),
            // Objects are immutable (create-only): a damaged one cannot be replaced by a push, and no index entry
            // may point at it.
            Ok(meta) => {
                return Err(self.error(format!(
                    "{key} holds {} bytes, not the {size} its name stands for: the object is damaged; nothing was \
                     pushed (its owner must delete it)",
                    meta.size
                )));
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.error(format!("{key}: {}", describe(&e)))),
        }
        let mut file = crate::fsread::open_regular(path)?;
        let mut hasher = sha2::Sha256::new();
        let mismatch = |got: String| {
            crate::error::Error::checkpoint(
                path,
                format!(
                    "its bytes hash to {got}, not the SHA-256 {sha} its manifest records; nothing was pushed. Check it \
                     with `gamma-run verify` and rebuild it"
                ),
            )
        };
        // Up to one part of the file (fewer bytes only at its end).
        let read = |file: &mut std::fs::File, buf: &mut Vec<u8>| -> Result<usize> {
            buf.clear();
            file.by_ref().take(PART as u64).read_to_end(buf).map_err(|e| crate::error::Error::io(path, e))
        };
        let mut buf = Vec::with_capacity(PART);
        if size <= PART as u64 {
            read(&mut file, &mut buf)?;
            hasher.update(&buf);
            let got = crate::names::hex(&hasher.finalize());
            if got != sha || buf.len() as u64 != size {
                return Err(mismatch(got));
            }
            return self.create(&key, buf).map(|_| ());
        }
        let upload = self
            .block_on(self.store.put_multipart(&key))
            .map_err(|e| self.error(format!("{key}: cannot start an upload ({})", describe(&e))))?;
        let mut upload = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
        let sent: Result<()> = (|| {
            loop {
                let n = read(&mut file, &mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf);
                self.block_on(upload.wait_for_capacity(PARTS_IN_FLIGHT))
                    .map_err(|e| self.error(format!("{key}: upload failed ({})", describe(&e))))?;
                // Sending a full part spawns its request on the runtime: entered for that.
                let _inside = self.runtime.enter();
                upload.put(bytes::Bytes::from(std::mem::take(&mut buf)));
                buf = Vec::with_capacity(PART);
            }
            let got = crate::names::hex(&hasher.finalize_reset());
            if got != sha { Err(mismatch(got)) } else { Ok(()) }
        })();
        match sent {
            Ok(()) => {
                crate::store::failpoint("push-before-complete");
                self.block_on(upload.finish())
                    .map(|_| ())
                    .map_err(|e| self.error(format!("{key}: upload failed ({})", describe(&e))))
            }
            Err(e) => {
                // Parts already sent are discarded: no partial object is ever visible under the key.
                if let Err(abort) = self.block_on(upload.abort()) {
                    tracing::warn!("{key}: the failed upload could not be aborted ({})", describe(&abort));
                }
                Err(e)
            }
        }
    }
}

fn create_only() -> PutOptions {
    PutOptions::from(PutMode::Create)
}

/// A service that has no conditional put: object_store says so, or the server answers 501 Not Implemented.
fn unconditional(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotImplemented { .. }) || describe(e).contains("501 Not Implemented")
}
