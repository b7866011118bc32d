//! All user-facing output of the commands: run summaries, the status table and JSON, verify results.
//! Commands hand their results here; nothing else prints to stdout. Names and messages can come from
//! checkpoints anyone can publish: human output shows their control characters escaped (`plain`), markdown
//! escapes its own syntax too (`md`), JSON is JSON-escaped by serde.
//! One file per command's output (`run`, `status`, `show`, `verify`, `clean`); here, the one way to stdout and how
//! paths and sizes are shown.

/// `println!` to stdout, except that a closed stdout (`gamma-run status --format json | head`) is not an error:
/// printing stops quietly, the command finishes its work (nothing is left half-written) and `main` decides the
/// exit (`stdout_state`), as other Unix tools do, instead of panicking or exiting mid-command. (SIGPIPE stays
/// ignored: restoring it would also kill the process when the Hub closes a connection under a write.)
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::report::emit(&format!($($arg)*))
    };
}

pub(crate) mod clean;
pub(crate) mod remote;
pub(crate) mod run;
pub(crate) mod show;
pub(crate) mod status;
pub(crate) mod verify;

/// One line to stdout (see `out!`).
pub(crate) fn emit(line: &str) {
    // Every line printed passes the redactor too (an error may quote what a server said).
    emit_bytes(format!("{}\n", crate::redact::redact(line)).as_bytes());
}

/// What became of stdout: still open, closed by the reader, or failing (the first error, said once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdoutState {
    Open,
    Closed,
    Failed(String),
}

static STDOUT: std::sync::Mutex<Option<StdoutState>> = std::sync::Mutex::new(None);

/// Whether stdout took everything printed (`main` turns `Failed` into an error exit).
pub fn stdout_state() -> StdoutState {
    STDOUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone().unwrap_or(StdoutState::Open)
}

/// Bytes to stdout; once stdout is closed or failing, nothing more is written.
pub(crate) fn emit_bytes(bytes: &[u8]) {
    use std::io::Write;
    let mut state = STDOUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if state.is_some() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => *state = Some(StdoutState::Closed),
        Err(e) => *state = Some(StdoutState::Failed(format!("writing to stdout: {e}"))),
    }
}

/// A path as every command prints it: relative to the current directory (with up to two `..`, as a job file's
/// outputs beside `jobs/` are), else as it is.
pub(crate) fn shown_path(path: &std::path::Path) -> String {
    let cwd = std::env::current_dir().ok().and_then(|d| std::fs::canonicalize(d).ok());
    match cwd {
        Some(cwd) if path.is_absolute() => relative(path, &cwd).unwrap_or_else(|| path.display().to_string()),
        _ => path.display().to_string(),
    }
}

fn relative(path: &std::path::Path, from: &std::path::Path) -> Option<String> {
    use std::path::Component;
    let (p, f): (Vec<Component>, Vec<Component>) = (path.components().collect(), from.components().collect());
    let common = p.iter().zip(&f).take_while(|(a, b)| a == b).count();
    let ups = f.len() - common;
    // Only a short climb; and never through the root alone (that is just the absolute path).
    if ups > 2 || common <= 1 {
        return None;
    }
    let mut out = std::path::PathBuf::new();
    for _ in 0..ups {
        out.push("..");
    }
    out.extend(&p[common..]);
    Some(out.display().to_string())
}

pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut u) = (n as f64, 0);
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} bytes") } else { format!("{v:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    use super::relative;
    use std::path::Path;

    #[test]
    fn paths_are_shown_relative_to_the_current_directory() {
        let at = |p: &str, f: &str| relative(Path::new(p), Path::new(f));
        assert_eq!(at("/w/tensors/m/W.safetensors", "/w").as_deref(), Some("tensors/m/W.safetensors"));
        assert_eq!(at("/w/tensors/m/W.safetensors", "/w/jobs").as_deref(), Some("../tensors/m/W.safetensors"));
        assert_eq!(at("/w/t/x", "/w/a/b/c"), None, "three levels up is shown absolute");
        assert_eq!(at("/tmp/x", "/home/u"), None, "nothing but the root in common");
    }
}
