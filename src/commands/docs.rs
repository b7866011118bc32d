//! `gamma-run completions SHELL` and `gamma-run man`: generated from the clap definition, so they never drift
//! from the real command line. The man page is one page: the global options, then every subcommand with its
//! arguments (no `gamma-run-run(1)` pages are referred to, none being shipped), the environment variables
//! gamma-run reads, exit status and files.

use super::Exit;
use crate::cli::{Cli, CompletionsArgs};
use crate::error::{Error, Result};
use clap::CommandFactory;
use std::fmt::Write as _;

pub fn completions(args: CompletionsArgs) -> Result<Exit> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "gamma-run", &mut script);
    crate::report::emit_bytes(&script);
    Ok(Exit::Ok)
}

/// Every environment variable gamma-run reads, with its meaning (the man page's ENVIRONMENT section; a test
/// checks that the source reads no other).
pub(crate) const ENVIRONMENT: &[(&str, &str)] = &[
    ("HF_ENDPOINT", "The Hub's address (default https://huggingface.co); set it to use a mirror."),
    (
        "HF_TOKEN",
        "Access token for gated and private repos. Sent only to the endpoint's own origin; never logged, printed or \
         recorded.",
    ),
    ("HF_TOKEN_PATH", "File holding the token when HF_TOKEN is unset (default $HF_HOME/token)."),
    ("HF_HOME", "Hugging Face's home (default $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface)."),
    ("HF_HUB_CACHE", "The Hugging Face cache, shared with the Python client (default $HF_HOME/hub)."),
    ("HUGGINGFACE_HUB_CACHE", "The older name of HF_HUB_CACHE, used when HF_HUB_CACHE is unset."),
    ("HF_HUB_OFFLINE", "1 or true: never touch the network, as --offline."),
    ("HF_HUB_DISABLE_PROGRESS_BARS", "1 or true: no progress bars."),
    ("XDG_CACHE_HOME", "Where HF_HOME defaults to (huggingface/ under it)."),
    ("HOME", "Where HF_HOME defaults to when XDG_CACHE_HOME is unset (.cache/huggingface under it)."),
    ("NO_COLOR", "Set and not empty: no colour with --color auto."),
    (
        "RUST_LOG",
        "A log filter (tracing's EnvFilter syntax) that replaces -v and -q, e.g. RUST_LOG=debug to see the \
         libraries' logs too. The HTTP stack's wire dumps are never shown.",
    ),
    (
        "GAMMA_RUN_HTTP_CONNECTIONS",
        "Hub requests in flight at once, all --jobs workers together (default 8): the connection budget.",
    ),
    ("GAMMA_RUN_HTTP_ATTEMPTS", "Attempts per Hub request on transient failures (timeouts, 429, 5xx; default 6)."),
    ("GAMMA_RUN_HTTP_BACKOFF_MS", "The first retry's delay in milliseconds, doubling each time (default 500)."),
    ("GAMMA_RUN_HTTP_TIMEOUT_S", "Seconds to wait for a response to start (default 60; a body may take 4 times that)."),
    ("GAMMA_RUN_NO_LOCK", "1 or true: take no output locks (filesystems without flock); writes stay atomic."),
    ("GAMMA_RUN_FAILPOINT", "For crash tests only: abort at the named step of a write."),
    (
        "GAMMA_RUN_REMOTE",
        "The remote store, as --remote URL (s3://BUCKET/PREFIX, gs://…, az://…, file:///PATH); wins over the job \
         file's output.remote.",
    ),
    (
        "AWS_ENDPOINT_URL",
        "An s3:// remote's endpoint, for S3-compatible services (MinIO, R2, Ceph; AWS_ENDPOINT also read). The \
         other AWS_*, GOOGLE_* and AZURE_* variables of each cloud's credential chain are read by the client as \
         those clouds' tools read them; their secret values are never printed.",
    ),
    ("AWS_REGION", "An s3:// remote's region (also AWS_DEFAULT_REGION; default us-east-1)."),
    ("GAMMA_RUN_COSIGN", "The signature tool --require-attestation runs as `verify-blob` (default cosign)."),
];

/// Every key a job file takes (the man page's JOB FILE section; a test checks each appears in `init`'s file).
pub(crate) const JOB_FILE_KEYS: &[(&str, &str)] = &[
    ("version: 1", "Required: the job-file format this gamma-run reads."),
    (
        "output: {tensors, manifests}",
        "Where outputs go, relative to the job file. Without it: the workspace rule (the job file's directory, or the directory holding its jobs/).",
    ),
    ("defaults: {revision, frames, fetch}", "Applied to every job."),
    ("jobs:", "The list of jobs; each has model: or path:."),
    ("model: ORG/NAME", "A Hugging Face Hub repo id."),
    ("path: DIR", "A local checkpoint directory, relative to the job file."),
    ("revision: REV", "A branch, tag or 40-hex commit (model: jobs; default main)."),
    ("revisions: [R1, R2] | {match: GLOB}", "A grid: one output per revision, named NAME@REV."),
    ("name: NAME", "The output name (default: the repo id's or directory's last segment)."),
    (
        "frames: [gamma, …]",
        "Frames to build: gamma, gamma_prime, embedding, token_stats, causal_metric, causal (see FRAMES); with parameters as {name: causal, basis: eigen, ridge: 1e-6}.",
    ),
    ("tensor: KEY", "Which checkpoint key is W, when the rules need telling."),
    ("dtype: f32|bf16|f64", "Output dtype of the derived frames that take one."),
    (
        "fetch: range|full",
        "Read W's byte range from the Hub (range), or download the whole shard into the HF cache (full).",
    ),
];

/// The everyday loop (the man page's EXAMPLES section).
pub(crate) const EXAMPLES: &[(&str, &str)] = &[
    ("Start a project: a commented job file in jobs/models.yaml.", "gamma-run init"),
    (
        "A minimal job file:",
        "version: 1\njobs:\n  - model: Qwen/Qwen3-4B-Instruct-2507\n    frames: [gamma, gamma_prime]",
    ),
    (
        "Build what is stale; say what would be built first.",
        "gamma-run jobs/models.yaml -n\ngamma-run jobs/models.yaml",
    ),
    ("Gate CI on freshness, silently.", "gamma-run status jobs/models.yaml --check -q"),
    (
        "Audit what is stored.",
        "gamma-run show qwen3-4b-instruct-2507/gamma\ngamma-run verify jobs/models.yaml --sources",
    ),
    ("W of one model, without a job file.", "gamma-run get Qwen/Qwen3-4B-Instruct-2507@main -o out"),
    (
        "Share outputs through a remote store: pull what a colleague or a CI shard built (verified), build and push \
         the rest; then say what is where.",
        "gamma-run jobs/models.yaml --remote s3://team-bucket/gamma\ngamma-run status jobs/models.yaml --remote --check",
    ),
];

pub fn man() -> Result<Exit> {
    crate::report::emit_bytes(&man_page()?);
    Ok(Exit::Ok)
}

fn man_page() -> Result<Vec<u8>> {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    let io = |e| Error::io("the man page", e);
    man.render_title(&mut page).map_err(io)?;
    man.render_name_section(&mut page).map_err(io)?;
    man.render_synopsis_section(&mut page).map_err(io)?;
    man.render_description_section(&mut page).map_err(io)?;
    man.render_options_section(&mut page).map_err(io)?;
    let mut roff = String::from(".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let usage = sub.clone().render_usage().to_string();
        let usage =
            usage.trim_start_matches("Usage: ").replacen(sub.get_name(), &format!("gamma-run {}", sub.get_name()), 1);
        let _ = writeln!(roff, ".TP\n\\fB{}\\fR", esc(&usage));
        let about = sub.get_long_about().or(sub.get_about()).map(std::string::ToString::to_string).unwrap_or_default();
        let _ = writeln!(roff, "{}", esc(&about));
        let args: Vec<_> = sub.get_arguments().filter(|a| !a.is_hide_set() && a.get_id() != "help").collect();
        if !args.is_empty() {
            roff.push_str(".RS\n");
            for a in args {
                let name = match (a.get_short(), a.get_long()) {
                    (Some(s), Some(l)) => format!("-{s}, --{l}"),
                    (None, Some(l)) => format!("--{l}"),
                    (Some(s), None) => format!("-{s}"),
                    (None, None) => a.get_value_names().map_or_else(|| a.get_id().to_string(), |v| v.join(" ")),
                };
                let named: Option<Vec<String>> =
                    a.get_value_names().map(|v| v.iter().map(std::string::ToString::to_string).collect());
                let named = named.or_else(|| Some(vec![a.get_id().as_str().to_uppercase()]));
                let value = match (a.get_long(), named) {
                    (Some(_), Some(v)) if a.get_action().takes_values() => format!(" <{}>", v.join(" ")),
                    _ => String::new(),
                };
                let help = a.get_long_help().or(a.get_help()).map(std::string::ToString::to_string).unwrap_or_default();
                let _ = writeln!(roff, ".TP\n\\fB{}\\fR{}\n{}", esc(&name), esc(&value), esc(&help));
            }
            roff.push_str(".RE\n");
        }
    }
    roff.push_str(".SH JOB FILE\n");
    for (key, meaning) in JOB_FILE_KEYS {
        let _ = writeln!(roff, ".TP\n\\fB{}\\fR\n{}", esc(key), esc(meaning));
    }
    roff.push_str(".SH FRAMES\n");
    for frame in crate::frame::all() {
        let inputs: Vec<&str> = frame.inputs().iter().map(|f| f.name()).collect();
        let from = if inputs.is_empty() { "the model".to_string() } else { inputs.join(", ") };
        let _ = writeln!(roff, ".TP\n\\fB{}\\fR\n{} (from {from})", esc(frame.name()), esc(frame.file_name()));
        for p in frame.params() {
            let _ = writeln!(roff, ".br\n{}: {} (default {})", esc(p.name), esc(&p.domain.describe()), esc(p.default));
        }
    }
    roff.push_str(".SH EXAMPLES\n");
    for (what, example) in EXAMPLES {
        let _ = writeln!(roff, ".PP\n{}\n.PP\n.nf\n.RS\n{}\n.RE\n.fi", esc(what), esc(example));
    }
    roff.push_str(".SH ENVIRONMENT\n");
    for (name, meaning) in ENVIRONMENT {
        let _ = writeln!(roff, ".TP\n\\fB{}\\fR\n{}", esc(name), esc(meaning));
    }
    roff.push_str(
        ".SH EXIT STATUS\n.TP\n0\nAll good.\n.TP\n1\nSomething is stale (status \\-\\-check) or a verify mismatch.\n\
         .TP\n2\nAn error: bad input, or a job that failed (the others still ran).\n\
         .SH FILES\n.TP\n\\fBtensors/\\fR<name>/W.safetensors\nOutputs (one directory per job; derived frames beside γ).\n\
         .TP\n\\fBmanifests/\\fR<name>/<frame>.json\nOne manifest per output: source, digests and how they were obtained.\n\
         .TP\n\\fBattestations/\\fR<name>/<frame>.intoto.json\nWritten by attest.\n\
         .TP\n\\fB.gamma-run/\\fR\nOutput locks.\n",
    );
    page.extend_from_slice(roff.as_bytes());
    man.render_version_section(&mut page).map_err(io)?;
    Ok(page)
}

/// Text as roff shows it literally: backslashes and hyphens escaped, no line read as a request.
fn esc(s: &str) -> String {
    let body = s.replace('\\', "\\e").replace('-', "\\-");
    body.lines()
        .map(|l| if l.starts_with('.') || l.starts_with('\'') { format!("\\&{l}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
}
