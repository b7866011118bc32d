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
verify mismatch; 2 an error (bad input, a failed job)."
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build every stale or missing output of a job file (the default command)
    Run(RunArgs),
    /// Show each output's state: fresh, stale (with the reasons) or missing
    Status(StatusArgs),
    /// Re-hash every stored output against its manifest (offline)
    Verify(VerifyArgs),
    /// Write a synthetic checkpoint (for examples, tests and benchmarks)
    #[command(hide = true)]
    Synth(crate::synth::SynthArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job file (YAML)
    pub jobfile: PathBuf,
    /// Rebuild outputs even when they are fresh
    #[arg(long)]
    pub force: bool,
    /// Show what would be built and why; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Only the job with this output name (repeatable)
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    /// Jobs to run in parallel
    #[arg(long, short = 'j', default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Never touch the network: read Hub models from the HF cache only (also HF_HUB_OFFLINE=1)
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The job file (YAML)
    pub jobfile: PathBuf,
    /// Print JSON: one object per output
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when anything is stale or missing (for CI)
    #[arg(long)]
    pub check: bool,
    /// Only the job with this output name (repeatable)
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    /// Never touch the network (also HF_HUB_OFFLINE=1)
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The manifests directory
    #[arg(default_value = "manifests")]
    pub manifests: PathBuf,
    /// Print JSON: one object per manifest
    #[arg(long)]
    pub json: bool,
    /// Also recompute derived frames (e.g. gamma_prime) from their recorded inputs and compare the bytes
    #[arg(long)]
    pub recompute: bool,
}

const SUBCOMMANDS: &[&str] = &["run", "status", "verify", "synth", "help"];

/// The process arguments with `run` inserted when the first positional is not a subcommand.
pub fn args() -> Vec<OsString> {
    with_default_command(std::env::args_os().collect())
}

fn with_default_command(mut argv: Vec<OsString>) -> Vec<OsString> {
    let first = argv.iter().skip(1).position(|a| !a.to_string_lossy().starts_with('-')).map(|i| i + 1);
    if let Some(i) = first.filter(|&i| !SUBCOMMANDS.contains(&argv[i].to_string_lossy().as_ref())) {
        argv.insert(i, "run".into());
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
    }
}
