//! Secrets that must never be printed. The Hub token is registered here when it is read; every log line and
//! every error message that gamma-run prints passes through `redact`, which replaces registered secrets with
//! `<redacted>`. This is the second line of defence: the first is that no code formats the token at all, and
//! that the HTTP library's wire dumps (which hold request headers) are never emitted (see `main.rs`).
//! This module owns the list and the replacement; it does not decide what is logged.

use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Secrets shorter than this are not searched for in text (a one-letter token would blank every word); they
/// are kept out of output by never being formatted, which the tests check byte for byte.
const MIN_LITERAL: usize = 6;

/// Remembers `secret` so that `redact` removes it from anything printed later.
pub(crate) fn register(secret: &str) {
    if secret.len() < MIN_LITERAL {
        return;
    }
    let mut s = SECRETS.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !s.iter().any(|x| x == secret) {
        s.push(secret.to_string());
        // Longest first, so a secret that contains another is replaced whole.
        s.sort_by_key(|x| std::cmp::Reverse(x.len()));
    }
}

/// `text` with every registered secret replaced by `<redacted>`.
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let s = SECRETS.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !s.iter().any(|x| text.contains(x.as_str())) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for x in s.iter() {
        out = out.replace(x.as_str(), "<redacted>");
    }
    std::borrow::Cow::Owned(out)
}

/// Whether a log event may be emitted at all: the HTTP stack's TRACE events are its wire dumps (request and
/// response bytes as hex rows, `Authorization` header included), so they are dropped whatever `RUST_LOG` says.
pub fn event_allowed(target: &str, level: &tracing::Level) -> bool {
    let http_stack = ["ureq", "ureq_proto", "rustls", "webpki", "hyper", "hyper_util", "reqwest", "h2", "object_store"]
        .iter()
        .any(|t| target == *t || target.strip_prefix(t).is_some_and(|rest| rest.starts_with("::")));
    !(http_stack && *level == tracing::Level::TRACE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_replaced_and_wire_dumps_dropped() {
        register("hf_unit_test_secret_123");
        register("abc"); // too short to search for
        assert_eq!(redact("token hf_unit_test_secret_123 here"), "token <redacted> here");
        assert_eq!(redact("abc stays"), "abc stays");
        assert!(!event_allowed("ureq_proto::util", &tracing::Level::TRACE));
        assert!(!event_allowed("ureq", &tracing::Level::TRACE));
        assert!(event_allowed("ureq::pool", &tracing::Level::DEBUG));
        assert!(event_allowed("ureqx", &tracing::Level::TRACE));
        assert!(event_allowed("gamma_run::hub", &tracing::Level::TRACE));
    }

    #[test]
    fn every_occurrence_of_a_secret_is_replaced() {
        register("hf_twice_secret_456");
        let line =
            "GET ?token=hf_twice_secret_456 (Authorization: Bearer hf_twice_secret_456), again hf_twice_secret_456";
        let out = redact(line);
        assert!(!out.contains("hf_twice_secret_456"), "{out}");
        assert_eq!(out.matches("<redacted>").count(), 3, "{out}");
        // Back to back, and a secret inside a longer registered one.
        register("hf_twice_secret_456_longer");
        assert_eq!(
            redact("hf_twice_secret_456hf_twice_secret_456_longer"),
            "<redacted><redacted>",
            "the longer secret is replaced whole"
        );
    }
}
