//! The remote store: where a team's outputs are shared (S3 and S3-compatible services, GCS, Azure, a shared
//! filesystem), through Apache Arrow's `object_store`. This module owns the remote: its URL, its credentials
//! (each cloud's own environment, never printed), the layout of its objects, and the one runtime that drives the
//! async client. What is pulled is verified and stored by `pull.rs` through the local store's one commit
//! protocol; what is pushed is read back from the workspace by `push.rs`. Deciding *when* to pull or push is the
//! runner's.
//!
//! Layout under the URL's prefix — content-addressed and immutable, every object written create-only:
//! - `objects/sha256/<hex>`: an output's bytes, named by their SHA-256;
//! - `index/<fingerprint>/<sha256>.json`: the manifest of an output with that fingerprint and those bytes.
//!
//! Push writes the bytes before the index entry, so no entry ever points at missing or partial bytes; one LIST of
//! `index/` tells what the remote holds (1,000 entries per request on S3), without a request per output.

pub(crate) mod attestation;
pub(crate) mod pull;
pub(crate) mod push;

use crate::error::{Error, Result};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Environment variables that hold a credential: their values are registered as secrets when a remote is
/// opened, so no log line or error can print them (object_store reads them itself).
const SECRET_VARS: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SSE_CUSTOMER_KEY_BASE64",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_BEARER_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_TOKEN",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET",
    "AZURE_FABRIC_SESSION_TOKEN",
];

/// An opened remote store.
pub(crate) struct Remote {
    /// The URL as the user gave it, minus any credentials: what messages and manifests name.
    shown: String,
    store: Arc<dyn ObjectStore>,
    prefix: Key,
    runtime: tokio::runtime::Runtime,
    /// What the remote held when first listed (one LIST per run).
    index: OnceLock<std::result::Result<Index, String>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.shown).finish_non_exhaustive()
    }
}

/// Why `Remote::small` read nothing.
enum SmallError {
    Store(object_store::Error),
    TooLarge(String),
}

impl SmallError {
    fn describe(&self) -> String {
        match self {
            SmallError::Store(e) => describe(e),
            SmallError::TooLarge(why) => why.clone(),
        }
    }
}

/// What the remote holds: for each fingerprint, the SHA-256s of the outputs pushed under it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Index {
    pub(crate) entries: BTreeMap<String, BTreeSet<String>>,
}

impl Index {
    pub(crate) fn holds(&self, fingerprint: &str) -> Option<&BTreeSet<String>> {
        self.entries.get(fingerprint).filter(|s| !s.is_empty())
    }
}

/// Where an output stands between the workspace and the remote (`status --remote`), as `dvc status -c` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    /// Fresh here, and the remote holds the same bytes under the same fingerprint.
    Both,
    LocalOnly,
    RemoteOnly,
    /// Fresh here, but the remote holds other bytes under this fingerprint.
    Differing,
    /// Neither here (fresh) nor there.
    Neither,
    /// Read from a local directory: never pushed or pulled (see `shareable`).
    NotShared,
    /// Not known until its inputs are here (its fingerprint names their bytes).
    Unknown,
}

/// Whether an output with these fingerprint inputs may be shared through a remote: not one read from a local
/// directory, whose fingerprint covers its config, index and shard name but not W's bytes (a stat cache guards
/// those, on this machine only) — another checkpoint with the same config would have its fingerprint.
pub(crate) fn shareable(fingerprint: &crate::manifest::fingerprint::Inputs) -> bool {
    fingerprint.get("source.kind").map(String::as_str) != Some("local")
}

impl Presence {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Presence::Both => "in both",
            Presence::LocalOnly => "only local",
            Presence::RemoteOnly => "only remote",
            Presence::Differing => "differing",
            Presence::Neither => "in neither",
            Presence::NotShared => "not shared (read from a local directory)",
            Presence::Unknown => "unknown until its inputs are here",
        }
    }
    pub(crate) fn of(local_sha: Option<&str>, remote: Option<&BTreeSet<String>>) -> Presence {
        match (local_sha, remote) {
            (Some(s), Some(r)) if r.contains(s) => Presence::Both,
            (Some(_), Some(_)) => Presence::Differing,
            (Some(_), None) => Presence::LocalOnly,
            (None, Some(_)) => Presence::RemoteOnly,
            (None, None) => Presence::Neither,
        }
    }
}

pub(crate) fn object_key(prefix: &Key, sha256: &str) -> Key {
    prefix.clone().join("objects").join("sha256").join(sha256)
}

pub(crate) fn index_key(prefix: &Key, fingerprint: &str, sha256: &str) -> Key {
    prefix.clone().join("index").join(fingerprint).join(format!("{sha256}.json"))
}

/// The URL schemes a remote can have (`Remote::open` builds a client for each; job files are checked against it).
pub(crate) const SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "file"];

impl Remote {
    /// Opens the remote at `url` (nothing is sent yet). Credentials come from the environment, as each cloud's
    /// tools read them; an `s3://` endpoint from `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`), plain HTTP allowed only
    /// to an `http://` endpoint named there.
    pub(crate) fn open(url: &str) -> Result<Remote> {
        for var in SECRET_VARS {
            if let Ok(v) = std::env::var(var) {
                crate::redact::register(&v);
            }
        }
        let shown = shown_url(url);
        let usage = |why: String| Error::Remote { url: shown.clone(), message: why };
        let parsed = url::Url::parse(url).map_err(|e| {
            usage(format!("not a URL ({e}); a remote is s3://BUCKET/PREFIX, gs://…, az://… or file:///PATH"))
        })?;
        if let Some(p) = parsed.password() {
            crate::redact::register(p);
        }
        // TLS for the cloud clients: ring, as ureq's (a no-op when already installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let retry = object_store::RetryConfig {
            max_retries: 4,
            retry_timeout: std::time::Duration::from_secs(60),
            backoff: object_store::BackoffConfig {
                init_backoff: std::time::Duration::from_millis(50),
                max_backoff: std::time::Duration::from_secs(5),
                base: 2.0,
            },
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        // Set key by key over what each builder read from the environment (its proxy and TLS settings stay): a
        // connect timeout that says "unreachable" quickly, a request timeout long enough for a large object, and
        // plain HTTP only towards an endpoint the user named as http://.
        use object_store::ClientConfigKey as Client;
        let client = |endpoint: Option<&str>| {
            let mut keys = vec![(Client::ConnectTimeout, "5s"), (Client::Timeout, "600s")];
            if endpoint.is_some_and(|e| e.starts_with("http://")) {
                keys.push((Client::AllowHttp, "true"));
            }
            keys
        };
        let path_of = |u: &url::Url| u.path().trim_start_matches('/').to_string();
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match parsed.scheme() {
            "s3" | "s3a" => {
                let endpoint = env("AWS_ENDPOINT_URL").or_else(|| env("AWS_ENDPOINT"));
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(url).with_retry(retry);
                for (k, v) in client(endpoint.as_deref()) {
                    b = b.with_config(object_store::aws::AmazonS3ConfigKey::Client(k), v);
                }
                if let Some(e) = &endpoint {
                    b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
                }
                // No keys in the environment: the profile's, as the AWS CLI reads them.
                let profile = match env("AWS_ACCESS_KEY_ID") {
                    Some(_) => None,
                    None => aws_profile(&env),
                };
                if let Some(p) = &profile {
                    for (key, value) in &p.credentials {
                        crate::redact::register(value);
                        b = match key.as_str() {
                            "aws_access_key_id" => b.with_access_key_id(value),
                            "aws_secret_access_key" => b.with_secret_access_key(value),
                            "aws_session_token" => b.with_token(value),
                            _ => b,
                        };
                    }
                }
                let region = env("AWS_REGION")
                    .or_else(|| env("AWS_DEFAULT_REGION"))
                    .or_else(|| profile.and_then(|p| p.region))
                    .unwrap_or_else(|| "us-east-1".into());
                b = b.with_region(region);
                (Arc::new(b.build().map_err(|e| usage(describe(&e)))?), path_of(&parsed))
            }
            "gs" => {
                // GOOGLE_BASE_URL names another endpoint (an emulator, a private one).
                let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url).with_retry(retry);
                for (k, v) in client(env("GOOGLE_BASE_URL").as_deref()) {
                    b = b.with_config(object_store::gcp::GoogleConfigKey::Client(k), v);
                }
                (Arc::new(b.build().map_err(|e| usage(describe(&e)))?), path_of(&parsed))
            }
            "az" | "azure" | "abfs" | "abfss" => {
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url).with_retry(retry);
                for (k, v) in client(env("AZURE_STORAGE_ENDPOINT").as_deref()) {
                    b = b.with_config(object_store::azure::AzureConfigKey::Client(k), v);
                }
                (Arc::new(b.build().map_err(|e| usage(describe(&e)))?), path_of(&parsed))
            }
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| usage("a file:// remote needs an absolute path (file:///shared/store)".into()))?;
                // A store directory is created where its parent exists (a first push); one whose parent is not
                // there is a share that is not mounted, and is not created on the local disk in its place.
                if !dir.exists() && dir.parent().is_some_and(Path::is_dir) {
                    let _ = std::fs::create_dir(&dir);
                }
                if !dir.is_dir() {
                    return Err(usage(format!(
                        "{} is not a directory (is the share mounted?); create it to use it as a remote",
                        dir.display()
                    )));
                }
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| usage(format!("{} cannot be used: {}", dir.display(), describe(&e))))?;
                (Arc::new(store), String::new())
            }
            other => {
                return Err(usage(format!(
                    "unknown scheme {other:?}: a remote is s3://BUCKET/PREFIX (S3, MinIO, R2, Ceph: endpoint in \
                     AWS_ENDPOINT_URL), gs://BUCKET/PREFIX, az://CONTAINER/PREFIX or file:///PATH"
                )));
            }
        };
        let prefix = Key::parse(prefix.trim_end_matches('/')).map_err(|e| usage(describe(&e)))?;
        // Two workers: the remote's time goes on waiting, and the runner's workers block on it in parallel.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gamma-run-remote")
            .enable_all()
            .build()
            .map_err(|e| usage(format!("cannot start its I/O runtime: {e}")))?;
        Ok(Remote { shown, store, prefix, runtime, index: OnceLock::new() })
    }

    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    pub(crate) fn error(&self, message: impl Into<String>) -> Error {
        Error::Remote { url: self.shown.clone(), message: message.into() }
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// A small object (a manifest, a statement) read whole, refused past `max` bytes whatever its listed size
    /// says (streamed, so memory stays bounded). `Err`: object_store's error, or why it is refused.
    fn small(&self, key: &Key, max: u64) -> std::result::Result<Vec<u8>, SmallError> {
        use futures_util::StreamExt;
        let got = self.block_on(self.store.get(key)).map_err(SmallError::Store)?;
        let too_large = || SmallError::TooLarge(format!("larger than {max} bytes, too large for what it should be"));
        if got.meta.size > max {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        let mut stream = got.into_stream();
        while let Some(chunk) = self.block_on(stream.next()) {
            let chunk = chunk.map_err(SmallError::Store)?;
            if (bytes.len() + chunk.len()) as u64 > max {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// What the remote holds, listed once (then remembered for the rest of the command). An unreachable remote
    /// is an error naming it.
    pub(crate) fn index(&self) -> Result<&Index> {
        self.index.get_or_init(|| self.list_index()).as_ref().map_err(|e| self.error(e.as_str()))
    }

    fn list_index(&self) -> std::result::Result<Index, String> {
        use futures_util::StreamExt;
        let prefix = self.prefix.clone().join("index");
        let mut index = Index::default();
        let listed: Vec<object_store::Result<object_store::ObjectMeta>> =
            self.block_on(self.store.list(Some(&prefix)).collect());
        // object_store pages through LIST itself (up to 1,000 keys a request on S3).
        for meta in listed {
            let meta = match meta {
                Ok(m) => m,
                // A file:// remote whose directory is not there yet holds nothing (a first push creates it).
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(format!("cannot list index/: {}", describe(&e))),
            };
            let parts: Vec<String> =
                meta.location.prefix_match(&prefix).into_iter().flatten().map(|p| p.as_ref().to_string()).collect();
            // index/<fingerprint>/<sha256>.json; anything else under index/ is not ours and is ignored.
            if let [fp, file] = parts.as_slice()
                && let Some(sha) = file.strip_suffix(".json")
                && crate::names::is_hex(fp, 64)
                && crate::names::is_hex(sha, 64)
            {
                index.entries.entry(fp.clone()).or_default().insert(sha.to_string());
            }
        }
        Ok(index)
    }

    /// Whether the remote can be reached at all (its index listed); for a job file's optional remote, the run
    /// goes on without it when not, after one warning.
    pub(crate) fn reachable(&self) -> Result<()> {
        self.index().map(|_| ())
    }
}

/// What an AWS profile holds for gamma-run: its keys from the shared credentials file and its region from the
/// config file.
struct AwsProfile {
    credentials: Vec<(String, String)>,
    region: Option<String>,
}

/// Profile `AWS_PROFILE` (else `default`) from `AWS_SHARED_CREDENTIALS_FILE` (else ~/.aws/credentials) and
/// `AWS_CONFIG_FILE` (else ~/.aws/config), as the AWS CLI reads them; `None` when the credentials file has no
/// such section. (object_store reads the environment, instance and web-identity credentials, not profiles.)
fn aws_profile(env: &dyn Fn(&str) -> Option<String>) -> Option<AwsProfile> {
    let home = env("HOME").map(std::path::PathBuf::from);
    let file = |var: &str, name: &str| {
        env(var).map(std::path::PathBuf::from).or_else(|| Some(home.as_ref()?.join(".aws").join(name)))
    };
    let name = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let text = std::fs::read_to_string(file("AWS_SHARED_CREDENTIALS_FILE", "credentials")?).ok()?;
    let credentials = ini_section(&text, &name)?;
    let config = file("AWS_CONFIG_FILE", "config").and_then(|f| std::fs::read_to_string(f).ok()).unwrap_or_default();
    let section = if name == "default" { name.clone() } else { format!("profile {name}") };
    let region =
        ini_section(&config, &section).and_then(|kv| kv.into_iter().find(|(k, _)| k == "region").map(|(_, v)| v));
    Some(AwsProfile { credentials, region })
}

/// The `key = value` pairs of section `[name]` of an INI file (comments `#` and `;`), or `None` without it.
fn ini_section(text: &str, name: &str) -> Option<Vec<(String, String)>> {
    let mut found = None;
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == name;
            if inside {
                found.get_or_insert_with(Vec::new);
            }
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            found.get_or_insert_with(Vec::new).push((k.trim().to_lowercase(), v.trim().to_string()));
        }
    }
    found
}

/// `url` without user information (`s3://key:secret@bucket` is not a form object_store reads, but a URL a user
/// pastes may carry one) and without a query.
pub(crate) fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.set_query(None);
            u.to_string()
        }
        Err(_) => url.chars().filter(|c| !c.is_control()).collect(),
    }
}

/// An object_store error as one line: its message and the chain of causes (the status and the service's
/// words), never the request (which can carry a signature).
pub(crate) fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    crate::redact::redact(&text).into_owned()
}

/// The remote a command uses: `--remote`/`GAMMA_RUN_REMOTE` first, else the job file's `output.remote`.
pub(crate) fn from_args(given: Option<&str>, job_file: Option<&str>) -> Result<Option<Arc<Remote>>> {
    match (given.filter(|s| !s.is_empty()), job_file) {
        (Some(url), _) | (None, Some(url)) => Ok(Some(Arc::new(Remote::open(url)?))),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials_and_presence_reads_as_dvc_says_it() {
        assert_eq!(shown_url("s3://AKIAX:s3cr3tvalue@bucket/p?x=1"), "s3://bucket/p");
        assert_eq!(shown_url("file:///shared/store"), "file:///shared/store");
        let set: BTreeSet<String> = ["a".to_string()].into();
        assert_eq!(Presence::of(Some("a"), Some(&set)), Presence::Both);
        assert_eq!(Presence::of(Some("b"), Some(&set)), Presence::Differing);
        assert_eq!(Presence::of(Some("b"), None), Presence::LocalOnly);
        assert_eq!(Presence::of(None, Some(&set)), Presence::RemoteOnly);
        assert_eq!(Presence::of(None, None), Presence::Neither);
    }

    #[test]
    fn an_ini_section_is_read_as_the_aws_cli_reads_it() {
        let text = "# c\n[default]\naws_access_key_id = A\n\n[team]\nAWS_Secret_Access_Key=s = t\n; x\n";
        assert_eq!(ini_section(text, "default"), Some(vec![("aws_access_key_id".into(), "A".into())]));
        assert_eq!(ini_section(text, "team"), Some(vec![("aws_secret_access_key".into(), "s = t".into())]));
        assert_eq!(ini_section(text, "other"), None);
    }

    #[test]
    fn an_unknown_scheme_says_which_are_known() {
        let e = Remote::open("ftp://host/x").unwrap_err().to_string();
        assert!(e.contains("unknown scheme \"ftp\"") && e.contains("s3://"), "{e}");
    }
}
