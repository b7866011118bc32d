//! `gamma-run attest [MANIFESTS_DIR | JOBFILE]`: an in-toto Statement v1 per output, so Sigstore / cosign / model-signing
//! tooling can sign and verify it. `subject` is the output file and its SHA-256; the predicate is the manifest's
//! provenance shaped after SLSA provenance v1: the job as `externalParameters`, each source file (or input frame)
//! as a `resolvedDependency` with its digest where known.

use super::Exit;
use crate::cli::AttestArgs;
use crate::error::{Error, IoContext, Result};
use crate::manifest::Manifest;

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
        let mut bytes = serde_json::to_vec_pretty(&crate::manifest::statement::statement(&m, &root)).expect("json");
        bytes.push(b'\n');
        crate::store::write_atomic(&file, &bytes)?;
        written.push(file);
    }
    crate::report::verify::attested(&written, quiet);
    Ok(Exit::Ok)
}
