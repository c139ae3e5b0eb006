//! One fetch of the key set: discovery when needed, a conditional `GET` bounded in time and
//! size, and the document parsed into the keys this source accepts.

use std::fmt;
use std::time::Duration;

use http::header::{ACCEPT, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, StatusCode};
use jsonwebtoken::{AlgorithmFamily, DecodingKeyKind};

use super::client::{FetchError, FetchRequest, FetchResponse};
use super::events::{self, Trigger};
use super::url::{check_url, discovery_url};
use super::{Inner, bump, cache};
use crate::BuildError;
use crate::keys::{Jwks, KeyEntry, KeySet};

/// Why a refresh failed.
#[derive(Debug, Clone)]
pub(super) enum Failure {
    /// No usable response: transport error, timeout, body over the cap, or a status other
    /// than `200` (and `304` when revalidating).
    Unreachable {
        url: String,
        reason: String,
    },
    Document(String),
    NoUsableKeys {
        skipped: usize,
    },
    Discovery(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unreachable { url, reason } => write!(f, "GET {url}: {reason}"),
            Failure::Document(reason) => write!(f, "invalid JWKS document: {reason}"),
            Failure::NoUsableKeys { skipped } => write!(
                f,
                "the JWKS has no usable signing key ({skipped} skipped: malformed, not for \
                 signatures, algorithm not allowed, or too weak)"
            ),
            Failure::Discovery(reason) => write!(f, "OpenID Connect discovery: {reason}"),
        }
    }
}

impl Failure {
    /// What `build` reports when the first refresh fails: an unreachable provider apart
    /// from a bad document.
    pub(super) fn into_build_error(self, issuer: Option<&str>) -> BuildError {
        match self {
            Failure::Unreachable { url, reason } => {
                BuildError::KeySourceUnreachable { url, reason }
            }
            Failure::Discovery(reason) => BuildError::Discovery {
                issuer: issuer.unwrap_or_default().to_owned(),
                reason,
            },
            Failure::Document(reason) => BuildError::InvalidJwks(reason),
            none @ Failure::NoUsableKeys { .. } => BuildError::InvalidJwks(none.to_string()),
        }
    }
}

/// What identifies a key for change detection: its `kid`, algorithms and public material.
pub(super) type KeyPrint = (Option<Box<str>>, u16, Vec<u8>);

/// A parsed key set with at least one usable key.
pub(super) struct Loaded {
    pub set: KeySet,
    /// Sorted, distinct.
    pub kids: Vec<Box<str>>,
    pub keys: usize,
    /// Sorted.
    pub prints: Vec<KeyPrint>,
    pub skipped: usize,
}

/// A successful fetch.
pub(super) enum Fetched {
    /// `200`: a new document.
    Modified {
        loaded: Loaded,
        etag: Option<HeaderValue>,
        ttl: Duration,
    },
    /// `304` to our `If-None-Match`: the keys we have are still current.
    NotModified {
        etag: Option<HeaderValue>,
        ttl: Duration,
    },
}

impl Inner {
    /// Fetches the key set; with `etag`, conditionally.
    pub(super) async fn fetch(
        &self,
        trigger: Trigger,
        etag: Option<HeaderValue>,
    ) -> Result<Fetched, Failure> {
        let uri = self.resolve_jwks_uri().await?;
        events::fetching(&uri, trigger);
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/jwk-set+json, application/json"),
        );
        let revalidating = etag.is_some();
        if let Some(etag) = etag {
            headers.insert(IF_NONE_MATCH, etag);
        }
        let response = self.get(&uri, headers).await?;
        let ttl = self.ttl(&response.headers);
        let etag = response.headers.get(ETAG).cloned();
        match response.status {
            StatusCode::OK => Ok(Fetched::Modified {
                loaded: self.parse(&response.body)?,
                etag,
                ttl,
            }),
            StatusCode::NOT_MODIFIED if revalidating => Ok(Fetched::NotModified { etag, ttl }),
            status => Err(unexpected(uri, status)),
        }
    }

    /// One request through the fetcher. The total timeout and the body cap are enforced here
    /// too, so a fetcher that ignores them cannot hang a refresh or hand over too much.
    async fn get(&self, url: &str, headers: HeaderMap) -> Result<FetchResponse, Failure> {
        bump(&self.counters.requests);
        let limit = self.config.max_body_size;
        let request = FetchRequest {
            url: url.to_owned(),
            headers,
            max_body_size: limit,
            connect_timeout: self.config.connect_timeout,
            timeout: self.config.total_timeout,
        };
        let failed = |error: FetchError| Failure::Unreachable {
            url: url.to_owned(),
            reason: error.to_string(),
        };
        match tokio::time::timeout(self.config.total_timeout, self.fetcher.fetch(request)).await {
            Err(_) => Err(failed(FetchError::Timeout)),
            Ok(Err(error)) => Err(failed(error)),
            Ok(Ok(response)) if response.body.len() > limit => {
                Err(failed(FetchError::BodyTooLarge { limit }))
            }
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// The JWKS URL, by discovery the first time when configured with an issuer.
    async fn resolve_jwks_uri(&self) -> Result<String, Failure> {
        if let Some(uri) = self.jwks_uri.get() {
            return Ok(uri.clone());
        }
        let Some(issuer) = self.issuer.as_deref() else {
            return Err(Failure::Discovery("no issuer configured".into()));
        };
        let url = discovery_url(issuer);
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let response = self.get(&url, headers).await?;
        if response.status != StatusCode::OK {
            return Err(unexpected(url, response.status));
        }
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let doc: Discovery = serde_json::from_slice(&response.body)
            .map_err(|e| Failure::Discovery(format!("{url}: invalid document: {e}")))?;
        if doc.issuer != issuer {
            // A multi-tenant provider's shared document (Entra ID's `common`) names a template
            // such as `https://login.microsoftonline.com/{tenantid}/v2.0`: no token carries it,
            // so it is refused like any other issuer, with the way that works.
            let template = if doc.issuer.contains('{') {
                format!(
                    "; it is a template, checked per token: take the keys with \
                     RemoteJwks::from_jwks_uri({:?}) and check `iss` per token \
                     (Provider::entra_multi_tenant does for Entra ID)",
                    doc.jwks_uri
                )
            } else {
                String::new()
            };
            return Err(Failure::Discovery(format!(
                "the document's issuer {:?} is not the configured issuer {issuer:?} \
                 (OpenID Connect Discovery 1.0 §4.3 requires them to be identical){template}",
                doc.issuer
            )));
        }
        check_url(&doc.jwks_uri, self.config.allow_http_for_loopback).map_err(|p| {
            Failure::Discovery(format!("jwks_uri {:?}: {}", doc.jwks_uri, p.jwks()))
        })?;
        events::discovered(issuer, &doc.jwks_uri);
        Ok(self.jwks_uri.get_or_init(|| doc.jwks_uri).clone())
    }

    /// The URL events name: the JWKS URL, or the discovery URL until it is known.
    pub(super) fn uri_for_events(&self) -> String {
        match (self.jwks_uri.get(), &self.issuer) {
            (Some(uri), _) => uri.clone(),
            (None, Some(issuer)) => discovery_url(issuer),
            (None, None) => String::new(),
        }
    }

    /// The response's freshness, clamped to the configured bounds.
    fn ttl(&self, headers: &HeaderMap) -> Duration {
        cache::freshness(headers)
            .unwrap_or(self.config.ttl_min)
            .clamp(self.config.ttl_min, self.config.ttl_max)
    }

    /// The usable keys of a JWKS document: allowed algorithms only, never symmetric ones.
    fn parse(&self, body: &[u8]) -> Result<Loaded, Failure> {
        let text =
            std::str::from_utf8(body).map_err(|_| Failure::Document("not UTF-8 text".into()))?;
        let jwks = Jwks::from_json(text).map_err(|e| {
            Failure::Document(match e {
                BuildError::InvalidJwks(reason) => reason,
                other => other.to_string(),
            })
        })?;
        let entries: Vec<KeyEntry> = jwks
            .entries(Some(self.allowed))
            .into_iter()
            .filter(|e| e.family() != AlgorithmFamily::Hmac)
            .collect();
        let skipped = jwks.skipped() + (jwks.len() - entries.len());
        if entries.is_empty() {
            return Err(Failure::NoUsableKeys { skipped });
        }
        let mut prints: Vec<KeyPrint> = entries.iter().map(print).collect();
        prints.sort();
        let mut kids: Vec<Box<str>> = entries.iter().filter_map(|e| e.kid.clone()).collect();
        kids.sort();
        kids.dedup();
        Ok(Loaded {
            keys: entries.len(),
            set: KeySet::new(entries),
            kids,
            prints,
            skipped,
        })
    }
}

fn unexpected(url: String, status: StatusCode) -> Failure {
    Failure::Unreachable {
        url,
        reason: format!("HTTP {status}"),
    }
}

fn print(entry: &KeyEntry) -> KeyPrint {
    let algs = entry.algs.bits();
    let material = match entry.key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => bytes.clone(),
        DecodingKeyKind::RsaModulusExponent { n, e } => {
            // The length of `n` first, so that no other `(n, e)` gives the same bytes.
            let mut bytes = Vec::with_capacity(n.len() + e.len() + 8);
            bytes.extend_from_slice(&(n.len() as u64).to_be_bytes());
            bytes.extend_from_slice(n);
            bytes.extend_from_slice(e);
            bytes
        }
    };
    (entry.kid.clone(), algs, material)
}
