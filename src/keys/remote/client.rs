//! The HTTP client seam: a small trait, and its default implementation on reqwest + rustls.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http::{HeaderMap, StatusCode};

/// The future an [`HttpFetcher`] returns.
pub type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<FetchResponse, FetchError>> + Send + 'a>>;

/// An HTTP client that can `GET` a URL: the JWKS document and the OpenID Connect discovery
/// document are fetched through it.
///
/// The default is reqwest with rustls. Implement this to use another client (a corporate
/// proxy, a private CA, a test double). An implementation must:
///
/// * send a `GET` to [`FetchRequest::url`] with [`FetchRequest::headers`];
/// * **not follow redirects** (a redirect is answered as the 3xx response it is);
/// * stop reading the body as soon as it exceeds [`FetchRequest::max_body_size`] and return
///   [`FetchError::BodyTooLarge`], rather than buffering the whole body first.
///
/// [`RemoteJwks`](super::RemoteJwks) bounds every call by the configured total timeout and
/// checks the body size again, so a fetcher that misbehaves cannot hang a refresh or
/// hand over an oversized document.
///
/// ```
/// use tower_jwt_auth::remote::{FetchFuture, FetchRequest, FetchResponse, HttpFetcher};
///
/// /// Serves one fixed document, whatever is asked.
/// struct Fixed(&'static str);
///
/// impl HttpFetcher for Fixed {
///     fn fetch(&self, _request: FetchRequest) -> FetchFuture<'_> {
///         let body = self.0.as_bytes().to_vec();
///         Box::pin(async move {
///             Ok(FetchResponse::new(http::StatusCode::OK, http::HeaderMap::new(), body))
///         })
///     }
/// }
/// ```
pub trait HttpFetcher: Send + Sync + 'static {
    /// Performs one `GET`.
    fn fetch(&self, request: FetchRequest) -> FetchFuture<'_>;
}

/// One `GET` to perform.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FetchRequest {
    /// The absolute URL.
    pub url: String,
    /// Request headers (`Accept`, and `If-None-Match` when revalidating).
    pub headers: HeaderMap,
    /// The largest body to accept, in bytes.
    pub max_body_size: usize,
    /// The configured connect timeout.
    pub connect_timeout: Duration,
    /// The configured bound on the whole exchange, body included.
    pub timeout: Duration,
}

/// What the server answered.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FetchResponse {
    /// The status code.
    pub status: StatusCode,
    /// The response headers (`Cache-Control`, `Age`, `ETag` are read).
    pub headers: HeaderMap,
    /// The body, at most `max_body_size` bytes.
    pub body: Vec<u8>,
}

impl FetchResponse {
    /// A response.
    pub fn new(status: StatusCode, headers: HeaderMap, body: Vec<u8>) -> FetchResponse {
        FetchResponse {
            status,
            headers,
            body,
        }
    }
}

/// Why a `GET` produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The connection or the whole exchange took longer than allowed.
    #[error("timed out")]
    Timeout,
    /// The body is larger than `max_body_size`.
    #[error("response body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// Any other failure: DNS, connection refused, TLS, a reset connection.
    #[error("{0}")]
    Transport(String),
}

/// The default [`HttpFetcher`]: reqwest over rustls with the Mozilla root certificates
/// (webpki-roots), so no system certificate store is needed.
///
/// The client it builds follows no redirects, has the configured connect and total
/// timeouts, and sends `User-Agent: tower-jwt-auth/<version>`. Proxies from the
/// `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` environment variables are honoured, as reqwest does.
#[derive(Debug, Clone)]
pub(crate) struct ReqwestFetcher {
    client: reqwest::Client,
}

impl ReqwestFetcher {
    /// A client with these timeouts.
    pub(crate) fn new(
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<ReqwestFetcher, FetchError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .user_agent(concat!("tower-jwt-auth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Transport(error_chain(&e)))?;
        Ok(ReqwestFetcher { client })
    }
}

impl HttpFetcher for ReqwestFetcher {
    fn fetch(&self, request: FetchRequest) -> FetchFuture<'_> {
        Box::pin(async move {
            let limit = request.max_body_size;
            let mut response = self
                .client
                .get(&request.url)
                .headers(request.headers)
                .timeout(request.timeout)
                .send()
                .await
                .map_err(from_reqwest)?;
            if response
                .content_length()
                .is_some_and(|len| len > limit as u64)
            {
                return Err(FetchError::BodyTooLarge { limit });
            }
            let status = response.status();
            let headers = std::mem::take(response.headers_mut());
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(from_reqwest)? {
                if body.len() + chunk.len() > limit {
                    return Err(FetchError::BodyTooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(FetchResponse {
                status,
                headers,
                body,
            })
        })
    }
}

fn from_reqwest(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout
    } else {
        FetchError::Transport(error_chain(&e))
    }
}

/// `e: cause: cause`, as reqwest's own `Display` leaves the causes out.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
