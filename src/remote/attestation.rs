//! Signed attestations in the remote store: the defence against someone who can write the bucket (and so forge
//! bytes and manifest together). `push` sends an output's in-toto statement (`gamma-run attest`) and the Sigstore
//! bundle a builder signed it with (`cosign sign-blob --bundle attestations/NAME/FRAME.sigstore.json …`), when both
//! are in the workspace, to `attestations/<fingerprint>/<sha256>.intoto.json` and `….sigstore.json` (a grid's
//! revisions with byte-identical W share bytes, not fingerprints, nor statements). `--require-attestation` makes a
//! pull use an output only when its statement is exactly the one `attest` makes of the remote manifest (so the
//! signature covers the manifest's source, files and digests, parameters and inputs, not only the bytes), and
//! `cosign verify-blob` (the signature tool; `GAMMA_RUN_COSIGN` names another binary) accepts
//! the bundle with the identity the user gives (`--cosign-arg`). gamma-run checks no signature itself.

use super::Remote;
use crate::error::Result;
use crate::manifest::Manifest;
use object_store::path::Path as Key;
use std::path::{Path, PathBuf};

/// Statements and bundles are a few KiB; anything far larger is not one.
const MAX_BYTES: u64 = 1 << 20;

fn statement_key(prefix: &Key, fingerprint: &str, sha256: &str) -> Key {
    prefix.clone().join("attestations").join(fingerprint).join(format!("{sha256}.intoto.json"))
}

fn bundle_key(prefix: &Key, fingerprint: &str, sha256: &str) -> Key {
    prefix.clone().join("attestations").join(fingerprint).join(format!("{sha256}.sigstore.json"))
}

/// Where `attest` writes an output's statement in workspace `root`, and where its signature bundle is expected.
pub(crate) fn local_paths(root: &Path, name: &str, frame: &str) -> (PathBuf, PathBuf) {
    let dir = root.join("attestations").join(name);
    (dir.join(format!("{frame}.intoto.json")), dir.join(format!("{frame}.sigstore.json")))
}

/// How pulled outputs' attestations are checked: `cosign verify-blob --bundle B STATEMENT` and the user's
/// arguments (the expected identity: `--key`, or `--certificate-identity` and `--certificate-oidc-issuer`).
#[derive(Debug, Clone)]
pub(crate) struct Verifier {
    program: String,
    args: Vec<String>,
}

impl Verifier {
    pub(crate) fn new(args: Vec<String>) -> Verifier {
        let program =
            std::env::var("GAMMA_RUN_COSIGN").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "cosign".into());
        Verifier { program, args }
    }

    fn verify(&self, statement: &Path, bundle: &Path) -> std::result::Result<(), String> {
        let out = std::process::Command::new(&self.program)
            .arg("verify-blob")
            .arg("--bundle")
            .arg(bundle)
            .args(&self.args)
            .arg(statement)
            .output()
            .map_err(|e| format!("cannot run {} ({e}); install cosign or set GAMMA_RUN_COSIGN", self.program))?;
        if out.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        Err(format!("{} verify-blob refused its signature ({said})", self.program))
    }
}

/// Whether `statement` is the statement `attest` makes of manifest `m` (about exactly its bytes and fingerprint,
/// and everything else the statement records of it). `root` only places local sources, which are never shared.
fn vouches(statement: &[u8], m: &Manifest, root: &Path) -> std::result::Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_slice(statement).map_err(|e| format!("its statement is not JSON ({e})"))?;
    let subjects = v["subject"].as_array().map(Vec::as_slice).unwrap_or_default();
    if subjects.len() != 1 || subjects[0]["digest"]["sha256"].as_str() != Some(m.output.sha256.as_str()) {
        return Err("its statement is not about these bytes (subject digest)".into());
    }
    let fp = &v["predicate"]["buildDefinition"]["internalParameters"]["fingerprint"];
    if fp.as_str() != Some(m.fingerprint.as_str()) {
        return Err("its statement records another fingerprint".into());
    }
    if v != crate::manifest::statement::statement(m, root) {
        return Err("its statement does not describe the manifest it was pushed with".into());
    }
    Ok(())
}

impl Remote {
    /// Sends the statement and bundle of output `m` (workspace `root`) when both are there and the statement is
    /// about `m`'s bytes; whether they were sent. Create-only, as every object.
    pub(crate) fn push_attestation(&self, root: &Path, m: &Manifest) -> Result<bool> {
        let (statement, bundle) = local_paths(root, &m.name, &m.frame);
        let (Ok(s), Ok(b)) = (std::fs::read(&statement), std::fs::read(&bundle)) else { return Ok(false) };
        if vouches(&s, m, root).is_err() {
            // A statement of an earlier build: not this output's, not sent.
            return Ok(false);
        }
        let (fp, sha) = (m.fingerprint.as_str(), m.output.sha256.as_str());
        for (key, bytes) in [(statement_key(&self.prefix, fp, sha), s), (bundle_key(&self.prefix, fp, sha), b)] {
            self.create(&key, bytes)?;
        }
        Ok(true)
    }

    /// The statement and bundle the remote holds for the output remote manifest `m` describes, checked: the
    /// statement is the one `attest` makes of `m`, and `verifier` accepts its signature. `Err`: why the output is
    /// not used.
    pub(crate) fn verified_attestation(
        &self,
        m: &Manifest,
        root: &Path,
        verifier: &Verifier,
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let (fingerprint, sha256) = (m.fingerprint.as_str(), m.output.sha256.as_str());
        let bad = |why: String| self.error(format!("attestations/{fingerprint}/{sha256}: {why}; not used"));
        let fetch = |key: &Key| -> Result<Vec<u8>> {
            self.small(key, MAX_BYTES).map_err(|e| match e {
                super::SmallError::Store(object_store::Error::NotFound { .. }) => bad(
                    "no signed attestation in the remote (its builder pushes one: gamma-run attest, cosign sign-blob \
                     --bundle attestations/NAME/FRAME.sigstore.json attestations/NAME/FRAME.intoto.json, gamma-run \
                     push)"
                        .into(),
                ),
                e => bad(format!("{key}: {}", e.describe())),
            })
        };
        let statement = fetch(&statement_key(&self.prefix, fingerprint, sha256))?;
        let bundle = fetch(&bundle_key(&self.prefix, fingerprint, sha256))?;
        vouches(&statement, m, root).map_err(bad)?;
        let dir = tempfile::tempdir().map_err(|e| bad(format!("no temp dir ({e})")))?;
        let (s, b) = (dir.path().join("statement.intoto.json"), dir.path().join("bundle.sigstore.json"));
        std::fs::write(&s, &statement).and_then(|()| std::fs::write(&b, &bundle)).map_err(|e| bad(e.to_string()))?;
        verifier.verify(&s, &b).map_err(bad)?;
        Ok((statement, bundle))
    }
}
