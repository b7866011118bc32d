//! `gamma-run init [DIR]`: writes a commented starter job file, `DIR/jobs/models.yaml`, that lists every key a job
//! file takes, and says where its outputs will go (the workspace rule). Never overwrites a file.

use super::Exit;
use crate::cli::InitArgs;
use crate::error::{Error, IoContext, Result};

/// The starter job file: every key, commented, with one local and one Hub job.
const TEMPLATE: &str = r#"# A gamma-run job file. Run it with `gamma-run jobs/models.yaml`; `gamma-run status jobs/models.yaml` says what
# is fresh, `gamma-run verify jobs/models.yaml` re-checks what is stored. Every key is listed; most are optional.
version: 1

# output:                  # where outputs go; without it, the project (the directory holding jobs/)
#   tensors: ../tensors    # paths relative to this file
#   manifests: ../manifests
#   remote: s3://team-bucket/gamma   # a store shared with CI and colleagues (gs://, az://, file:///shared/…)

# defaults:                # applied to every job below
#   revision: main         # branch, tag or 40-hex commit
#   frames: [gamma]        # gamma, gamma_prime, embedding, token_stats, causal_metric, causal
#   fetch: range           # range (only W's bytes) or full (the whole shard into the HF cache)

jobs:
  - model: Qwen/Qwen3-4B-Instruct-2507   # a Hub repo id …
    # revision: main
    # revisions: [step1000, step2000]    # a grid: one output per revision (or {match: "step*"})
    # name: qwen3-4b                     # output name; default: the repo id's last segment
    # tensor: lm_head.weight             # which checkpoint key is W, when the rules need telling
    frames: [gamma, gamma_prime]         # or {name: gamma_prime, dtype: bf16}, {name: causal, ridge: 1e-6}
  # - path: ../models/my-checkpoint      # … or a local checkpoint directory (relative to this file)
"#;

pub fn execute(args: InitArgs) -> Result<Exit> {
    let dir = args.dir.unwrap_or_default();
    let jobs = dir.join("jobs");
    let path = jobs.join("models.yaml");
    if path.exists() {
        return Err(Error::Usage(format!(
            "{} exists already; nothing was written (edit it, or init another directory)",
            path.display()
        )));
    }
    std::fs::create_dir_all(&jobs).at(&jobs)?;
    std::fs::write(&path, TEMPLATE).at(&path)?;
    let jf = crate::job::load(&path)?;
    crate::report::run::initialised(&path, jf.store.root());
    Ok(Exit::Ok)
}
