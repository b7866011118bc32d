//! The command line (clap derive): global flags and one subcommand per use. `gamma-run <JOBFILE>` means
//! `gamma-run run <JOBFILE>`; `args()` inserts the `run` before clap sees the arguments.

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "gamma-run",
    version,
    about = "Extract language models' unembedding matrices into audited coordinate frames",
    long_about = "Runs the jobs of a YAML job file: extracts each model's unembedding matrix W (γ, bf16, bit-identical to \
transformers) and derived frames, with a manifest per output. Fresh outputs are skipped, stale ones rebuilt.\n\n\
`gamma-run JOBFILE` is `gamma-run run JOBFILE`.\n\nExit codes: 0 all good; 1 something stale (status --check) or a \
verify mismatch; 2 an error (bad input, a failed job).",
    after_help = "Examples:\n  gamma-run init                                 # a commented job file: jobs/models.yaml\n  \
gamma-run jobs/models.yaml -n                  # what would be built, and why\n  \
gamma-run jobs/models.yaml                     # build what is stale\n  \
gamma-run status jobs/models.yaml --check -q   # CI gate\n  \
gamma-run verify jobs/models.yaml              # re-hash what is stored\n  \
gamma-run get ORG/MODEL@REV -o out             # W of one model, no job file\n  \
gamma-run jobs/models.yaml --remote s3://b/p   # pull (verified) and push through a store\n\n\
A job file:\n  version: 1\n  jobs:\n    - model: Qwen/Qwen3-4B-Instruct-2507\n      frames: [gamma, gamma_prime]\n\n\
Every key: `gamma-run man` (JOB FILE), or the file `gamma-run init` writes."
)]
pub struct Cli {
    /// More log output: -v gamma-run's decisions, -vv more (other libraries' logs: RUST_LOG)
    #[arg(short, long, action = clap::ArgAction::Count, global = true, long_help = "More log output: -v shows gamma-run's decisions (revision → commit, cache hit or miss, which key is W and why, each request with its range, status and time, bytes written and timings), -vv more. Other libraries' logs only through RUST_LOG (e.g. RUST_LOG=debug); the HTTP stack's wire dumps are never shown.")]
    pub verbose: u8,
    /// Only errors: `run` prints no result line but for failed or skipped outputs
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// When to colour log lines: auto (on a terminal, unless NO_COLOR is set), always, never
    #[arg(long, value_enum, global = true, default_value = "auto", value_name = "WHEN")]
    pub color: Color,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build every stale or missing output of a job file (the default command)
    Run(RunArgs),
    /// Show each output's state: fresh, stale (with the reasons) or missing
    Status(StatusArgs),
    /// Re-hash every stored output against its manifest (offline, unless --sources)
    Verify(VerifyArgs),
    /// Show a stored output or manifest: shape, dtype, provenance, and whether the file still matches
    Show(ShowArgs),
    /// Write an in-toto Statement (SLSA-style provenance) per output, for Sigstore / cosign to sign
    Attest(AttestArgs),
    /// Push fresh outputs to the remote store (content-addressed, create-only, bytes before index)
    Push(PushArgs),
    /// Pull the outputs the remote store holds into the workspace, each verified before it is stored; build nothing
    Pull(PullArgs),
    /// Pin every grid's revisions (`revisions:`) to their commits in JOBFILE's lock file, from one refs listing
    Lock(LockArgs),
    /// Remove outputs and manifests no job in the given job files produces any more, and temp files left by
    /// interrupted runs (list them first with --dry-run)
    #[command(visible_alias = "gc")]
    Clean(CleanArgs),
    /// Write a commented starter job file (jobs/models.yaml in DIR) and say where its outputs will go
    Init(InitArgs),
    /// W of one model without a job file: `gamma-run get ORG/MODEL[@REV]` (or a local checkpoint directory)
    Get(GetArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell)
    Completions(CompletionsArgs),
    /// Print the man page (roff)
    Man,
    /// Write a synthetic checkpoint (for examples, tests and benchmarks)
    #[command(hide = true)]
    Synth(crate::dev::synth::SynthArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job file (YAML)
    pub(crate) jobfile: PathBuf,
    /// Rebuild the selected outputs even when they are fresh (inputs `--only` brings along only when stale)
    #[arg(long)]
    pub(crate) force: bool,
    /// Rebuild the selected outputs and every input they bring along, fresh or not
    #[arg(long, conflicts_with = "force")]
    pub(crate) force_all: bool,
    /// Show what would be built and why; write nothing
    #[arg(long, short = 'n')]
    pub(crate) dry_run: bool,
    /// Only outputs matching this glob: a name (`Qwen*`) or name/frame (`*/gamma_prime`); repeatable
    #[arg(long, value_name = "PATTERN")]
    pub(crate) only: Vec<String>,
    /// Only shard K of N (0-based): a stable partition of the jobs for CI matrices and array jobs
    #[arg(long, value_name = "K/N")]
    pub(crate) shard: Option<crate::selection::Shard>,
    /// Jobs to run in parallel [default: 1; when several jobs read from the Hub, twice the connection budget,
    /// GAMMA_RUN_HTTP_CONNECTIONS (8), so their requests overlap and the connections stay busy while workers
    /// write; the budget still bounds the requests in flight]
    #[arg(long, short = 'j', value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) jobs: Option<u16>,
    /// Never touch the network: read Hub models from the HF cache only (also HF_HUB_OFFLINE=1), and leave the
    /// job file's remote store alone (one given with --remote or GAMMA_RUN_REMOTE is still used)
    #[arg(long)]
    pub(crate) offline: bool,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    /// With a remote: do not pull outputs it holds (build them here)
    #[arg(long)]
    pub(crate) no_pull: bool,
    /// With a remote: do not push what is built
    #[arg(long)]
    pub(crate) no_push: bool,
    /// Build nothing: an output neither fresh nor pullable from the remote fails
    #[arg(long, conflicts_with_all = ["force", "force_all", "no_pull"])]
    pub(crate) no_build: bool,
    #[command(flatten)]
    pub(crate) trust: TrustArgs,
}

/// What a pulled output must carry besides its verified bytes (`run` and `pull`).
#[derive(Debug, Clone, Args)]
pub struct TrustArgs {
    /// Pull only outputs with a signed attestation in the remote that `cosign verify-blob` accepts (statement from
    /// `gamma-run attest`, bundle pushed from attestations/NAME/FRAME.sigstore.json); others are built here
    /// (`pull`: fail)
    #[arg(long)]
    pub(crate) require_attestation: bool,
    /// An argument for `cosign verify-blob`, repeatable: the identity to expect, e.g. --cosign-arg=--key=cosign.pub,
    /// or --cosign-arg=--certificate-identity=… --cosign-arg=--certificate-oidc-issuer=…
    #[arg(long, value_name = "ARG", allow_hyphen_values = true, requires = "require_attestation")]
    pub(crate) cosign_arg: Vec<String>,
}

impl TrustArgs {
    pub(crate) fn verifier(&self) -> Option<crate::remote::attestation::Verifier> {
        self.require_attestation.then(|| crate::remote::attestation::Verifier::new(self.cosign_arg.clone()))
    }
}

#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub(crate) common: PushArgs,
    #[command(flatten)]
    pub(crate) trust: TrustArgs,
}

/// The remote store options `run` and `pull` share.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// A remote store shared with CI runners and colleagues: s3://BUCKET/PREFIX (S3, MinIO, R2, Ceph: endpoint
    /// in AWS_ENDPOINT_URL), gs://…, az://… or file:///PATH; overrides the job file's `output.remote`
    #[arg(long, env = "GAMMA_RUN_REMOTE", value_name = "URL", hide_env_values = true)]
    pub(crate) remote: Option<String>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The job file (YAML)
    pub(crate) jobfile: PathBuf,
    /// Only outputs matching this glob: a name (`Qwen*`) or name/frame (`*/gamma_prime`); repeatable
    #[arg(long, value_name = "PATTERN")]
    pub(crate) only: Vec<String>,
    /// Only shard K of N (0-based)
    #[arg(long, value_name = "K/N")]
    pub(crate) shard: Option<crate::selection::Shard>,
    /// Outputs transferred in parallel
    #[arg(long, short = 'j', default_value = "8", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) jobs: u16,
    /// Never touch the Hub (the remote is still used; also HF_HUB_OFFLINE=1)
    #[arg(long)]
    pub(crate) offline: bool,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The job file (YAML)
    pub(crate) jobfile: PathBuf,
    /// Print JSON: one object per output (same as --format json)
    #[arg(long, conflicts_with = "format")]
    pub(crate) json: bool,
    /// Output format: a plain table, JSON (a stable schema, see the README) or a markdown table for CI summaries
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: Format,
    /// Exit 1 when anything is stale or missing (for CI)
    #[arg(long)]
    pub(crate) check: bool,
    /// Only outputs matching this glob: a name (`Qwen*`) or name/frame (`*/gamma_prime`); repeatable
    #[arg(long, value_name = "PATTERN")]
    pub(crate) only: Vec<String>,
    /// Only shard K of N (0-based)
    #[arg(long, value_name = "K/N")]
    pub(crate) shard: Option<crate::selection::Shard>,
    /// Never touch the network (also HF_HUB_OFFLINE=1)
    #[arg(long)]
    pub(crate) offline: bool,
    /// Also say where each output stands against the remote store (in both, only local, only remote, differing):
    /// URL, else GAMMA_RUN_REMOTE, else the job file's `output.remote`. With --check, exit 1 unless every output
    /// is fresh here and in the remote
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub(crate) remote: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The manifests directory, or a job file (the manifests of its outputs, wherever its `output:` puts them)
    #[arg(default_value = "manifests", value_name = "MANIFESTS_DIR|JOBFILE")]
    pub(crate) manifests: PathBuf,
    /// Print JSON: one object per manifest
    #[arg(long)]
    pub(crate) json: bool,
    /// Also recompute derived frames (e.g. gamma_prime) from the inputs their fingerprints name
    #[arg(long)]
    pub(crate) recompute: bool,
    /// Also re-read every recorded source file whole (local file, HF cache blob, or the Hub: streamed, not
    /// stored), hash it, compare it with the manifest and the Hub's current digest, and re-extract W from it
    #[arg(long)]
    pub(crate) sources: bool,
    /// With --sources: never touch the network (also HF_HUB_OFFLINE=1); files read from the Hub are errors
    #[arg(long)]
    pub(crate) offline: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
    Markdown,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A stored output (e.g. tensors/NAME/W.safetensors), its manifest (manifests/NAME/FRAME.json), a job file
    /// (each of its built outputs), or an output's name (NAME or NAME/FRAME, in the workspace here or above)
    #[arg(value_name = "OUTPUT|MANIFEST|JOBFILE|NAME")]
    pub(crate) path: PathBuf,
    /// Print JSON instead of a table
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub struct AttestArgs {
    /// The manifests directory, or a job file (the manifests of its outputs)
    #[arg(default_value = "manifests", value_name = "MANIFESTS_DIR|JOBFILE")]
    pub(crate) manifests: PathBuf,
    /// Where to write `<name>/<frame>.intoto.json` (default: `attestations/` beside the manifests directory)
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The project directory [default: the current directory]
    #[arg(value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// A Hub repo id with an optional revision (ORG/MODEL or ORG/MODEL@REVISION), or a local checkpoint directory
    #[arg(value_name = "MODEL[@REV]|DIR")]
    pub(crate) model: String,
    /// Frames to build, besides gamma (repeatable): gamma_prime, embedding, token_stats
    #[arg(long = "frame", value_name = "FRAME")]
    pub(crate) frames: Vec<String>,
    /// The workspace to write into (tensors/ and manifests/ there) [default: the current directory]
    #[arg(short = 'o', long = "out", value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Read the model from the HF cache only
    #[arg(long)]
    pub(crate) offline: bool,
    /// Download the whole shard into the HF cache (`fetch: full`) instead of W's byte range
    #[arg(long)]
    pub(crate) full: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// The job file (YAML); the lock is written beside it as `<name>.lock.json`
    pub(crate) jobfile: PathBuf,
}

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Job files of the workspace; the others in it (YAML job files at its top and under its jobs/) are read
    /// too: whatever none of them produces is removed
    #[arg(required = true, value_name = "JOBFILE")]
    pub(crate) jobfiles: Vec<PathBuf>,
    /// List what would be removed; remove nothing
    #[arg(long, short = 'n')]
    pub(crate) dry_run: bool,
    /// Remove without asking (without it, clean asks on a terminal and refuses elsewhere)
    #[arg(long, short = 'y', conflicts_with = "dry_run")]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub(crate) shell: clap_complete::Shell,
}

/// Every subcommand name and alias, from clap's own definition (so a new subcommand is never taken for a job
/// file), and `help`.
fn subcommands() -> Vec<String> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut names: Vec<String> = cmd
        .get_subcommands()
        .flat_map(|c| std::iter::once(c.get_name().to_string()).chain(c.get_all_aliases().map(str::to_string)))
        .collect();
    names.push("help".into());
    names
}

/// The process arguments with `run` inserted when the first positional is not a subcommand.
pub fn args() -> Vec<OsString> {
    with_default_command(std::env::args_os().collect())
}

fn with_default_command(mut argv: Vec<OsString>) -> Vec<OsString> {
    // The first positional, skipping the values of global options that take one (`--color never`).
    let mut first = None;
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].to_string_lossy();
        if a == "--color" {
            i += 2;
            continue;
        }
        if !a.starts_with('-') {
            first = Some(i);
            break;
        }
        i += 1;
    }
    let known = subcommands();
    if let Some(i) = first.filter(|&i| !known.iter().any(|k| *k == argv[i].to_string_lossy())) {
        // A mistyped subcommand (`stauts`, `verfy`) that is not a file is left to clap, which names the
        // subcommand it looks like; anything else is a job file for `run`.
        let word = argv[i].to_string_lossy().into_owned();
        let typo = !std::path::Path::new(&word).exists() && known.iter().any(|s| strsim::levenshtein(&word, s) <= 2);
        if !typo {
            argv.insert(i, "run".into());
        }
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        with_default_command(args.iter().map(OsString::from).collect())
            .iter()
            .map(|s| s.to_string_lossy().into())
            .collect()
    }

    #[test]
    fn a_bare_job_file_means_run() {
        assert_eq!(v(&["g", "jobs/a.yaml"]), ["g", "run", "jobs/a.yaml"]);
        assert_eq!(v(&["g", "-v", "jobs/a.yaml", "--force"]), ["g", "-v", "run", "jobs/a.yaml", "--force"]);
        assert_eq!(v(&["g", "status", "a.yaml"]), ["g", "status", "a.yaml"]);
        assert_eq!(v(&["g", "--help"]), ["g", "--help"]);
        // Typos of subcommands are left for clap to suggest the right one.
        assert_eq!(v(&["g", "stauts", "jobs/x.yaml"]), ["g", "stauts", "jobs/x.yaml"]);
        assert_eq!(v(&["g", "verfy"]), ["g", "verfy"]);
        assert_eq!(v(&["g", "phase1.yaml"]), ["g", "run", "phase1.yaml"]);
        // Every subcommand clap knows is one (new ones included), with its aliases.
        for s in ["init", "get", "gc", "completions", "lock"] {
            assert!(subcommands().iter().any(|k| k == s), "{s}");
            assert_eq!(v(&["g", s])[1], s);
        }
        assert_eq!(v(&["g", "--color", "never", "a.yaml"]), ["g", "--color", "never", "run", "a.yaml"]);
        assert_eq!(v(&["g", "--color=always", "a.yaml"]), ["g", "--color=always", "run", "a.yaml"]);
    }
}
