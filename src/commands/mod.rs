//! One file per subcommand: each turns its `Args` into work and returns the exit status. Exit codes are decided
//! here (and, for an error or a stdout that failed, in `main.rs`), never where output is printed.

pub mod attest;
mod audited;
pub mod clean;
pub mod docs;
pub mod get;
pub mod init;
pub mod lock;
pub mod pull;
pub mod push;
pub mod run;
pub mod show;
pub mod status;
pub mod verify;

use crate::error::Error;
use crate::frame::Context;
use crate::hub::{Hub, HubSettings};
use crate::job::JobFile;
use crate::source::{SourceOptions, hf_cache};

/// 0 all good; 1 stale (`status --check`) or a verify mismatch; 2 an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Found = 1,
    Error = 2,
}

impl Exit {
    pub fn of_error(_: &Error) -> Exit {
        Exit::Error
    }
}

use crate::env::truthy;

/// The frames' context for a job file: its output roots and how to reach sources.
pub(crate) fn context(jf: &JobFile, offline: bool) -> Result<Context, Error> {
    // Hub settings (endpoint, token file) are read only when a job names a Hub model: a local-only job file
    // neither reads the token nor fails on a malformed HF_ENDPOINT.
    let needs_hub = jf.jobs.iter().any(|j| matches!(j.source, crate::source::SourceSpec::Hub { .. }));
    Ok(Context { store: jf.store.clone(), sources: source_options(offline, needs_hub)?, claims: None })
}

/// How sources are reached: the HF cache, and the Hub unless offline (`--offline`, `HF_HUB_OFFLINE`) or not
/// needed.
pub(crate) fn source_options(offline: bool, needs_hub: bool) -> Result<SourceOptions, Error> {
    let env = |k: &str| std::env::var(k).ok();
    let offline = offline || truthy(env("HF_HUB_OFFLINE"));
    let hub = if offline || !needs_hub {
        None
    } else {
        let settings = HubSettings::from_env(env).map_err(Error::Usage)?;
        Some(std::sync::Arc::new(Hub::new(settings)))
    };
    Ok(SourceOptions { hf_cache: hf_cache::cache_dir(env), hub })
}

/// The remote store a command uses — `--remote`/`GAMMA_RUN_REMOTE`, else the job file's `output.remote` — listed
/// once here, so an unreachable one is said once: an error for a remote given on the command line (the user asked
/// for it), a warning for the job file's (the run goes on building locally, and pushes nothing).
pub(crate) fn remote(
    given: Option<&str>,
    jf: &JobFile,
) -> Result<Option<std::sync::Arc<crate::remote::Remote>>, Error> {
    let optional = given.is_none_or(str::is_empty);
    let opened = crate::remote::from_args(given, jf.remote.as_deref()).and_then(|r| match r {
        Some(r) => r.reachable().map(|()| Some(r)),
        None => Ok(None),
    });
    match opened {
        Err(e) if optional => {
            tracing::warn!("{e}; going on without it: outputs are built here and nothing is pushed");
            Ok(None)
        }
        other => other,
    }
}

/// The frame whose outputs duplicate grouping compares: γ, W itself.
pub(crate) fn gamma() -> &'static str {
    crate::frame::GAMMA_NAME
}

/// The duplicate groups of the grids among `names` (outputs of frame gamma): read from their manifests.
pub(crate) fn grid_duplicates(jf: &JobFile, names: &[String]) -> Vec<crate::grid::Duplicates> {
    let outputs: Vec<crate::grid::StoredW> = jf
        .jobs
        .iter()
        .filter(|j| names.contains(&j.name))
        .filter_map(|j| {
            let grid = j.grid.as_ref()?.base.clone();
            let m = crate::manifest::Manifest::read(&jf.store.manifest_path(&j.name, gamma())).ok()?;
            let shard_sha256 = m
                .source
                .as_ref()
                .and_then(|s| s.files.iter().find(|f| f.path == s.range.file).and_then(|f| f.sha256.clone()));
            Some(crate::grid::StoredW { name: j.name.clone(), grid, sha256: m.output.sha256, shard_sha256 })
        })
        .collect();
    crate::grid::duplicates(&outputs)
}
