//! The one HTTP client for calls to upstream providers. It trusts the platform's store
//! (rustls-platform-verifier: the system roots, `SSL_CERT_FILE`/`SSL_CERT_DIR` honoured) plus
//! the provider's own CA bundle, follows no redirect (a token endpoint that redirects is
//! misconfigured or hostile), and bounds each call's time and answer size.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::FederationError;

/// Longest answer read from a provider (discovery documents, JWKS, tokens, user info).
const MAX_BODY: usize = 1024 * 1024;
/// Longest a call may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to a provider failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Not sent or no answer (connection, TLS, timeout).
    #[error("request failed: {0}")]
    Transport(String),
    /// The answer was larger than keygate reads.
    #[error("the answer is larger than {MAX_BODY} bytes")]
    TooLarge,
    /// The request could not be built.
    #[error("bad request: {0}")]
    Request(String),
}

/// An HTTP client for one provider (its CA bundle is part of it).
#[derive(Clone, Debug)]
pub struct UpstreamHttp {
    client: reqwest::Client,
}

impl UpstreamHttp {
    /// A client trusting the platform store plus the PEM certificates in `ca_bundle`.
    pub fn new(ca_bundle: Option<&str>) -> Result<Self, FederationError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("keygate/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_bundle.filter(|p| !p.trim().is_empty()) {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| FederationError::CaBundle(e.to_string()))?;
            if certs.is_empty() {
                return Err(FederationError::CaBundle("no certificate found".into()));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| FederationError::Client(e.to_string()))?;
        Ok(Self { client })
    }

    /// Sends `request` and reads the answer (at most [`MAX_BODY`] bytes).
    pub async fn execute(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, HttpError> {
        let request =
            reqwest::Request::try_from(request).map_err(|e| HttpError::Request(e.to_string()))?;
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(|e| HttpError::Transport(error_chain(&e)))?;
        let mut answer = http::Response::builder().status(response.status());
        if let Some(headers) = answer.headers_mut() {
            headers.extend(response.headers().clone());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| HttpError::Transport(error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        answer
            .body(body)
            .map_err(|e| HttpError::Request(e.to_string()))
    }
}

/// The error with its causes, so a status says "certificate unknown", not "request failed".
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl<'c> oauth2::AsyncHttpClient<'c> for UpstreamHttp {
    type Error = HttpError;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(self.execute(request))
    }
}
