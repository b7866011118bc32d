//! `gamma-run attest [MANIFESTS_DIR | JOBFILE]`: an in-toto Statement v1 per output, so Sigstore / cosign / model-signing
//! tooling can sign and verify it. `subject` is the output file and its SHA-256; the predicate is the manifest's
//! provenance shaped after SLSA provenance v1: the job as `externalParameters`, each source file (or input frame)
//! as a `resolvedDependency` with its digest where known.

use super::Exit;
use crate::cli::AttestArgs;
use crate::error::{Error, IoContext, Result};
use crate::manifest::Manifest;
use serde_json::{Value, json};

pub(crate) const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub(crate) const PREDICATE_TYPE: &str = "https://gamma-run.dev/provenance/v1";

pub fn execute(args: AttestArgs, quiet: bool) -> Result<Exit> {
    let audited = super::audited::manifests(&args.manifests, "attest")?;
    let dir = &audited.dir;
    let root = crate::store::workspace_of(&std::fs::canonicalize(dir).at(dir)?).to_path_buf();
    let out = args.out.clone().unwrap_or_else(|| root.join("attestations"));
    let mut written = Vec::new();
    for path in audited.manifests {
        let m = Manifest::read(&path)?;
        // Names come from the manifest: checked before they become paths, and it must be stored where they say
        // (a manifest in a/ claiming to be b's would overwrite b's statement).
        crate::job::check_name(&m.name).map_err(|e| Error::manifest(&path, e))?;
        let stored = path.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned());
        let frame = path.file_stem().map(|n| n.to_string_lossy().into_owned());
        if stored.as_deref() != Some(m.name.as_str()) || frame.as_deref() != Some(m.frame.as_str()) {
            return Err(Error::manifest(
                &path,
                format!("it says {}/{} but is stored elsewhere; not attested", m.name, m.frame),
            ));
        }
        // A statement vouches for what the manifest says: one that contradicts itself or its inputs is refused.
        let edited =
            |why: String| Error::manifest(&path, format!("manifest edited ({why}); not attested — rebuild it"));
        crate::manifest::consistency::check(&m).map_err(edited)?;
        crate::manifest::consistency::inputs(&m, dir).map_err(edited)?;

        if crate::frame::by_name(&m.frame).is_none() {
            return Err(Error::manifest(&path, format!("unknown frame {:?}", m.frame)));
        }
        let file = out.join(&m.name).join(format!("{}.intoto.json", m.frame));
        // Never through a planted link: below the workspace for the default place, below --out otherwise.
        let base = if args.out.is_some() { out.as_path() } else { root.as_path() };
        crate::store::no_links_below(base, &file)?;
        let mut bytes = serde_json::to_vec_pretty(&statement(&m, &root)).expect("json");
        bytes.push(b'\n');
        crate::store::write_atomic(&file, &bytes)?;
        written.push(file);
    }
    crate::report::verify::attested(&written, quiet);
    Ok(Exit::Ok)
}

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
                d["annotations"]["sha256_from"] =
                    json!(f.digest_from(s.kind).map(super::super::manifest::DigestFrom::as_str));
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
