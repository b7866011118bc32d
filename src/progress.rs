//! Progress bars for transfers (indicatif): one line per job, on a terminal only, off with `-q` or
//! `HF_HUB_DISABLE_PROGRESS_BARS`. Log lines go through `LogWriter`, which suspends the bars so they don't tear.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

static MULTI: OnceLock<Option<MultiProgress>> = OnceLock::new();

/// Turns bars on (when stderr is a terminal) or off, once, at start-up.
pub fn init(enabled: bool) {
    let multi = (enabled && std::io::stderr().is_terminal())
        .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
    let _ = MULTI.set(multi);
}

thread_local! {
    /// The output this thread is building (`name/frame`), which labels its bars.
    static OUTPUT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with the bars it draws labelled by `output` (`name/frame`).
pub(crate) fn for_output<R>(output: &str, f: impl FnOnce() -> R) -> R {
    let before = OUTPUT.with(|o| o.replace(Some(output.to_string())));
    let r = f();
    OUTPUT.with(|o| *o.borrow_mut() = before);
    r
}

/// A byte-progress bar for `what` (e.g. "W" or a file's name), labelled by the output being built (or by
/// `what` alone), with sizes in KiB/MiB/GiB, rate and ETA; a hidden one when bars are off.
pub(crate) fn bar(len: u64, what: &str) -> ProgressBar {
    let Some(Some(multi)) = MULTI.get() else { return ProgressBar::hidden() };
    let style = ProgressStyle::with_template(
        "{prefix:.bold} {msg} {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta:>4} {wide_bar}",
    )
    .expect("valid template");
    let output = OUTPUT.with(|o| o.borrow().clone());
    let bar = ProgressBar::new(len)
        .with_style(style)
        .with_prefix(crate::text::plain(output.as_deref().unwrap_or("gamma-run")).into_owned())
        .with_message(crate::text::plain(what).chars().take(40).collect::<String>());
    multi.add(bar)
}

/// Bytes of file content fetched from the Hub in this run (for the run's summary).
static FETCHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub(crate) fn count_fetched(n: u64) {
    FETCHED.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

pub(crate) fn fetched() -> u64 {
    FETCHED.load(std::sync::atomic::Ordering::Relaxed)
}

static PLAIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether log lines are written without colour (then every control character in them is shown escaped).
pub fn set_plain(plain: bool) {
    PLAIN.store(plain, std::sync::atomic::Ordering::Relaxed);
}

/// stderr for tracing, printed above the bars.
pub struct LogWriter;

impl Write for LogWriter {
    /// tracing writes one formatted event per call; it is redacted whole before it reaches stderr.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let mut clean = crate::redact::redact(&text).into_owned();
        if PLAIN.load(std::sync::atomic::Ordering::Relaxed) {
            if clean.chars().any(|c| c.is_control() && c != '\n') {
                clean = crate::text::plain_lines(&clean).into_owned();
            }
        } else if clean.chars().any(|c| c.is_control() && c != '\n' && c != '\u{1b}') {
            // Coloured: the colour codes (ESC sequences, from the formatter, which escapes ESC in values itself)
            // stay; every other control character (CR, BS, …) is shown escaped.
            clean = clean
                .chars()
                .map(|c| match c {
                    '\n' | '\u{1b}' => c.to_string(),
                    c if c.is_control() => c.escape_default().to_string(),
                    c => c.to_string(),
                })
                .collect();
        }
        let bytes = clean.as_bytes();
        match MULTI.get() {
            Some(Some(m)) => m.suspend(|| std::io::stderr().write_all(bytes)).map(|_| buf.len()),
            _ => std::io::stderr().write_all(bytes).map(|_| buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The default log line: `warning: message  key=value …`, as cargo prints them — no time, no level column —
/// with the level coloured when colour is on. (`-v` and more use tracing's full format, with times.)
pub struct Plain {
    pub color: bool,
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Plain
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = *event.metadata().level();
        let (word, code) = match level {
            tracing::Level::ERROR => ("error", "31"),
            tracing::Level::WARN => ("warning", "33"),
            tracing::Level::INFO => ("info", "32"),
            tracing::Level::DEBUG => ("debug", "34"),
            tracing::Level::TRACE => ("trace", "35"),
        };
        if self.color {
            write!(writer, "\u{1b}[1;{code}m{word}\u{1b}[0m: ")?;
        } else {
            write!(writer, "{word}: ")?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
