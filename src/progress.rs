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

/// A byte-progress bar labelled `label`, or a hidden one when bars are off.
pub(crate) fn bar(len: u64, label: &str) -> ProgressBar {
    let Some(Some(multi)) = MULTI.get() else { return ProgressBar::hidden() };
    let style = ProgressStyle::with_template(
        "{msg:30!} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} eta {eta:>4} {wide_bar}",
    )
    .expect("valid template");
    let bar = multi.add(ProgressBar::new(len).with_style(style));
    bar.set_message(label.to_string());
    bar
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
