//! What `push` and `status --remote` print about the remote store.

use crate::remote::push::{Line, Pushed};
use crate::text::plain;

/// The counts `push` decides its exit code from.
pub(crate) struct PushCounts {
    pub(crate) failed: usize,
    pub(crate) not_fresh: usize,
}

/// A line per output (`pushed`, `present`, `not pushed`, `FAILED`), then the summary; with `quiet`, only what
/// was not pushed.
pub(crate) fn pushed(lines: &[(String, Line)], remote: &str, quiet: bool) -> PushCounts {
    let (mut sent, mut present, mut not_fresh, mut failed, mut local) = (0, 0, 0, 0, 0);
    for (id, line) in lines {
        match line {
            Line::Pushed(Pushed::Sent) => {
                sent += 1;
                if !quiet {
                    out!("pushed   {id}");
                }
            }
            Line::Pushed(Pushed::AlreadyThere) => {
                present += 1;
                if !quiet {
                    out!("present  {id}  (the remote holds it already)");
                }
            }
            Line::Pushed(Pushed::NotShared) => {
                local += 1;
                if !quiet {
                    out!(
                        "local    {id}  (read from a local directory: never shared, its fingerprint does not cover W's bytes)"
                    );
                }
            }
            Line::NotFresh(why) => {
                not_fresh += 1;
                out!("not pushed {id}: {}", plain(why));
            }
            Line::Failed(why) => {
                failed += 1;
                out!("FAILED   {id}: {}", plain(why));
            }
        }
    }
    if !quiet || failed + not_fresh > 0 {
        let local = if local > 0 { format!(", {local} not shared (local sources)") } else { String::new() };
        out!("{sent} pushed, {present} already in {}, {not_fresh} not fresh, {failed} failed{local}", plain(remote));
    }
    PushCounts { failed, not_fresh }
}
