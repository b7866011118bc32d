//! The in-toto statement (SLSA-style provenance) of one manifest: what `attest` writes for signing, and what a
//! signed statement pulled from a remote store must equal (`remote::attestation`). Only the statement's content;
//! where it is written is `attest`'s.

use super::Manifest;
use serde_json::{Value, json};

pub(crate) const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub(crate) const PREDICATE_TYPE: &str = "https://gamma-run.dev/provenance/v1";

/// The statement for one manifest.
pub(crate) fn statement(m: &Manifest, root: &std::path::Path) -> Value {
    let mut deps: Vec<Value> = Vec::new();
    let mut external = json!({
        "name": m.name,
        "frame": m.frame,
        "params": m.params,
        "output": {"tensor": m.output.tensor, "dtype": m.output.dtype, "shape": m.output.shape, "size": m.output.size},
    });
    if let Some(s) = &m.source {
        external["source"] =
            json!({"kind": s.kind, "repo": s.repo, "path": s.path, "revision": s.revision, "tensor": s.tensor});
        for f in &s.files {
            let uri = match (&s.repo, &s.commit, s.local_dir(root)) {
                (Some(repo), Some(commit), _) => format!("hf://{repo}@{commit}/{}", f.path),
                // Where the source is now: a path recorded relative to the workspace, resolved against it.
                (_, _, Some(dir)) => format!("file://{}/{}", dir.display(), f.path),
                _ => f.path.clone(),
            };
            let mut d = json!({"uri": uri, "name": f.path, "annotations": {"size": f.size}});
            if let Some(sha) = &f.sha256 {
                d["digest"] = json!({"sha256": sha});
                // Who vouches for the digest: computed by gamma-run, or the Hub's / the cache's unchecked word.
                d["annotations"]["sha256_from"] = json!(f.digest_from(s.kind).map(super::DigestFrom::as_str));
            }
            deps.push(d);
        }
    }
    for i in &m.inputs {
        deps.push(json!({"name": i.path, "digest": {"sha256": i.sha256}, "annotations": {"frame": i.frame}}));
    }
    json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": m.output.path, "digest": {"sha256": m.output.sha256}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": format!("https://gamma-run.dev/frame/{}/v{}", m.frame, m.frame_version),
                "externalParameters": external,
                "internalParameters": {"fingerprint": m.fingerprint, "fingerprint_inputs": m.fingerprint_inputs},
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": "https://gamma-run.dev/builder", "version": {m.tool.name.clone(): m.tool.version}},
                "metadata": {"finishedOn": m.created_at},
            },
        },
    })
}
