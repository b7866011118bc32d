//! gamma-run's entry point: parse the command line, set up logging, dispatch to the subcommand, print the
//! error if there is one, and exit with the code the command decided (0 ok, 1 stale/mismatch, 2 error).

use clap::Parser;
use gamma_run::cli::{Cli, Command};
use gamma_run::commands::{self, Exit};

fn main() -> std::process::ExitCode {
    gamma_run::alloc::bound_large_buffers();
    gamma_run::store::interrupt::install();
    let cli = Cli::parse_from(gamma_run::cli::args());
    init_logging(cli.verbose, cli.quiet, cli.color);
    let result = match cli.command {
        Command::Run(args) => commands::run::execute(args, cli.quiet),
        Command::Status(args) => commands::status::execute(args, cli.quiet),
        Command::Verify(args) => commands::verify::execute(args, cli.quiet),
        Command::Show(args) => commands::show::execute(args),
        Command::Attest(args) => commands::attest::execute(args, cli.quiet),
        Command::Clean(args) => commands::clean::execute(args),
        Command::Push(args) => commands::push::execute(args, cli.quiet),
        Command::Pull(args) => commands::pull::execute(args, cli.quiet),
        Command::Lock(args) => commands::lock::execute(args),
        Command::Init(args) => commands::init::execute(args),
        Command::Get(args) => commands::get::execute(args, cli.quiet),
        Command::Completions(args) => commands::docs::completions(args),
        Command::Man => commands::docs::man(),
        Command::Synth(args) => gamma_run::dev::synth::execute(args).map(|()| Exit::Ok),
    };
    if let Some(peak) = gamma_run::alloc::peak_rss_bytes() {
        tracing::debug!("peak memory {:.1} MiB (VmHWM)", peak as f64 / (1 << 20) as f64);
    }
    let exit = result.unwrap_or_else(|e| {
        eprintln!("error: {}", gamma_run::text::plain_lines(&gamma_run::redact::redact(&e.to_string())));
        Exit::of_error(&e)
    });
    // A reader that closed stdout early (`| head`) is not a failure: the work was done, the exit is 0 as other
    // Unix tools give; a stdout that failed otherwise (a full disk) is an error.
    let exit = match gamma_run::report::stdout_state() {
        gamma_run::report::StdoutState::Open => exit,
        gamma_run::report::StdoutState::Closed => Exit::Ok,
        gamma_run::report::StdoutState::Failed(why) => {
            eprintln!("error: {why}");
            Exit::Error
        }
    };
    std::process::ExitCode::from(exit as u8)
}

/// Logs go to stderr; `-q` keeps errors only, `-v`/`-vv` add debug/trace. `RUST_LOG` overrides, except that the
/// HTTP stack's wire dumps (TRACE events holding raw request headers, the token among them) are never emitted,
/// and every line passes through `redact` on its way out.
fn init_logging(verbose: u8, quiet: bool, color: gamma_run::cli::Color) {
    use tracing_subscriber::prelude::*;
    // `-v` is gamma-run's own decisions (revision → commit, cache hit or miss, which key is W and why, each
    // request and its range, bytes and timings); libraries stay at warnings unless RUST_LOG asks for more.
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "warn,gamma_run=debug",
        _ => "warn,gamma_run=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let progress = !quiet && !gamma_run::env::truthy(std::env::var("HF_HUB_DISABLE_PROGRESS_BARS").ok());
    gamma_run::progress::init(progress);
    // The hint keeps disabled levels cheap: the `log` crate's global maximum follows it, so the HTTP library's
    // per-16-bytes `trace!` calls stop at one comparison instead of reaching the filter.
    let hint = tracing_subscriber::layer::Filter::<tracing_subscriber::Registry>::max_level_hint(&filter)
        .unwrap_or(tracing::level_filters::LevelFilter::TRACE);
    let no_wire_dumps =
        tracing_subscriber::filter::filter_fn(|m| gamma_run::redact::event_allowed(m.target(), m.level()))
            .with_max_level_hint(hint);
    // `--color auto` (the default): colour only on a terminal, and not with NO_COLOR; without colour, LogWriter escapes every control character
    // (a name from a checkpoint cannot rewrite the terminal through a log line).
    let color = match color {
        gamma_run::cli::Color::Always => true,
        gamma_run::cli::Color::Never => false,
        gamma_run::cli::Color::Auto => {
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    gamma_run::progress::set_plain(!color);
    // At the default verbosity a log line reads as cargo's do (`warning: …`); from `-v` on, with its time and
    // level, for following a run step by step.
    let lines = tracing_subscriber::fmt::layer().with_writer(|| gamma_run::progress::LogWriter).with_target(false);
    if verbose == 0 {
        let compact = lines.event_format(gamma_run::progress::Plain { color }).with_ansi(color);
        tracing_subscriber::registry().with(filter).with(compact.with_filter(no_wire_dumps)).init();
    } else {
        tracing_subscriber::registry().with(filter).with(lines.with_ansi(color).with_filter(no_wire_dumps)).init();
    }
}
