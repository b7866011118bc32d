//! How to reach the Hub, read from the environment as the Python client does: `HF_ENDPOINT`, `HF_TOKEN` (then
//! `HF_TOKEN_PATH`, then `$HF_HOME/token`); plus gamma-run's own knobs for
//! timeouts and retries. The token is kept out of `Debug` output.

use std::path::PathBuf;

/// The token file is refused past this size.
pub(crate) const MAX_TOKEN_FILE: u64 = 64 << 10;
use std::time::Duration;

#[derive(Clone)]
pub(crate) struct HubSettings {
    pub(crate) endpoint: String,
    pub(crate) origin: Origin,
    pub(crate) token: Option<String>,
    pub(crate) attempts: u32,
    /// Requests in flight at once, all workers together (`GAMMA_RUN_HTTP_CONNECTIONS`, default 8).
    pub(crate) connections: usize,
    pub(crate) backoff: Duration,
    pub(crate) timeout: Duration,
}

impl std::fmt::Debug for HubSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("HubSettings")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// scheme, host and port: where the token may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) scheme: String,
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Origin {
    pub(crate) fn of(url: &str) -> Result<Origin, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("{url:?} is not an absolute http(s) URL"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(format!("{url:?}: only http and https are supported")),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return Err(format!("{url:?}: credentials in URLs are not supported"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h.to_string(), p.parse().map_err(|_| format!("{url:?}: bad port"))?)
            }
            _ => (authority.to_string(), default_port),
        };
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        Ok(Origin { scheme, host: host.to_ascii_lowercase(), port })
    }
}

/// Resolves a `Location` header against the URL that sent it.
pub(crate) fn join_url(base: &str, location: &str) -> Result<String, String> {
    if location.contains("://") {
        Origin::of(location)?;
        return Ok(location.to_string());
    }
    let origin = Origin::of(base)?;
    let root = format!("{}://{}:{}", origin.scheme, origin.host, origin.port);
    if location.starts_with("//") {
        return Err(format!("protocol-relative redirect {location:?} refused"));
    }
    if location.starts_with('/') {
        return Ok(format!("{root}{location}"));
    }
    let path = base.split_once("://").map_or(base, |(_, r)| r);
    let path = path.find('/').map_or("/", |i| &path[i..]);
    let dir = &path[..path.rfind('/').map_or(1, |i| i + 1)];
    Ok(format!("{root}{dir}{location}"))
}

impl HubSettings {
    /// `HF_ENDPOINT` without a trailing slash, or the Hub's own address.
    pub(crate) fn endpoint(env: &dyn Fn(&str) -> Option<String>) -> String {
        env("HF_ENDPOINT")
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "https://huggingface.co".into())
            .trim_end_matches('/')
            .to_string()
    }

    pub(crate) fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<HubSettings, String> {
        let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let endpoint = Self::endpoint(&env);
        let origin = Origin::of(&endpoint).map_err(|e| format!("HF_ENDPOINT: {e}"))?;
        let token = match set("HF_TOKEN") {
            Some(t) => Some(t.trim().to_string()),
            None => {
                let path = set("HF_TOKEN_PATH").map_or_else(|| crate::env::hf_home(&env).join("token"), PathBuf::from);
                // A token is a few dozen bytes; the file must be a regular one (a FIFO would block, a link to
                // /dev/zero would never end).
                let bytes =
                    crate::fsread::read_small_opt(&path, MAX_TOKEN_FILE).map_err(|e| format!("the token file {e}"))?;
                bytes.map(|b| String::from_utf8_lossy(&b).trim().to_string()).filter(|t| !t.is_empty())
            }
        };
        if let Some(t) = &token {
            crate::redact::register(t);
        }
        let num = |k: &str, default: u64| set(k).and_then(|v| v.parse().ok()).unwrap_or(default);
        Ok(HubSettings {
            endpoint,
            origin,
            token,
            attempts: num("GAMMA_RUN_HTTP_ATTEMPTS", 6) as u32,
            connections: num("GAMMA_RUN_HTTP_CONNECTIONS", 8).clamp(1, 256) as usize,
            backoff: Duration::from_millis(num("GAMMA_RUN_HTTP_BACKOFF_MS", 500)),
            timeout: Duration::from_secs(num("GAMMA_RUN_HTTP_TIMEOUT_S", 60)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_redirect_targets() {
        let o = Origin::of("https://huggingface.co/api").unwrap();
        assert_eq!((o.scheme.as_str(), o.host.as_str(), o.port), ("https", "huggingface.co", 443));
        assert_eq!(Origin::of("http://127.0.0.1:8080").unwrap().port, 8080);
        assert_ne!(Origin::of("http://a:1/x").unwrap(), Origin::of("http://a:2/x").unwrap());
        assert_ne!(Origin::of("http://a/x").unwrap(), Origin::of("https://a/x").unwrap());
        assert!(Origin::of("ftp://a").is_err() && Origin::of("http://u:p@a").is_err());
        assert_eq!(join_url("http://a:1/x/y", "/z").unwrap(), "http://a:1/z");
        assert_eq!(join_url("http://a:1/x/y", "z?q").unwrap(), "http://a:1/x/z?q");
        assert_eq!(join_url("http://a:1/x", "http://b:2/c").unwrap(), "http://b:2/c");
        assert!(join_url("http://a/x", "//evil/x").is_err());
    }

    #[test]
    fn token_sources_follow_the_python_client_and_stay_out_of_debug() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hf_fromfile\n").unwrap();
        let home = dir.path().to_str().unwrap().to_string();
        let s = HubSettings::from_env(|k| (k == "HF_HOME").then(|| home.clone())).unwrap();
        assert_eq!(s.token.as_deref(), Some("hf_fromfile"));
        let s = HubSettings::from_env(|k| match k {
            "HF_HOME" => Some(home.clone()),
            "HF_TOKEN" => Some("hf_env".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.token.as_deref(), Some("hf_env"));
        assert!(!format!("{s:?}").contains("hf_env"));
        assert_eq!(s.endpoint, "https://huggingface.co");
    }
}
