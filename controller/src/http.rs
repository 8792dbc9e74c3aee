//! The HTTP API kubeseal and `sealant` talk to, and the metrics endpoint.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper_util::rt::{TokioIo, TokioTimer};
use sealant_core::{Scope, hybrid_decrypt, hybrid_encrypt, yaml};
use sealant_crds::{SEALING_KEY_ANNOTATION, SealedSecret, UnsealOptions, open_items};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

use crate::keyring::Keyring;
use crate::metrics::{HttpDurationLabels, HttpLabels, Metrics};

/// Largest request body: a Secret is at most 1 MiB, sealed and base64-encoded ~1.4 MiB.
const BODY_LIMIT: usize = 4 << 20;
/// Verify and rotate requests decrypting at once, each holding at most one body: with the
/// parsed copy, this keeps their memory well under the Deployment's 256 MiB limit.
pub const HEAVY_REQUESTS: usize = 4;
/// How long a verify or rotate request waits for its turn before it is answered 503.
const HEAVY_WAIT: Duration = Duration::from_secs(10);
/// Items one request may ask to decrypt: bounds the RSA work a request costs.
const MAX_ITEMS: usize = 512;
/// Open connections per server; more are closed at once.
const MAX_CONNECTIONS: usize = 512;

#[derive(Clone, Debug)]
pub struct ApiState {
    pub keyring: watch::Receiver<Arc<Keyring>>,
    pub ready: watch::Receiver<bool>,
    pub metrics: Arc<Metrics>,
    pub limiter: Arc<Mutex<RateLimiter>>,
    pub unseal_options: UnsealOptions,
    /// Permits for the requests that decrypt (see [`HEAVY_REQUESTS`]).
    pub heavy: Arc<Semaphore>,
    /// RBAC forbids the leader Lease: this replica writes as the only one.
    pub election_forbidden: watch::Receiver<bool>,
}

/// Per-client token buckets: `rate` per second, `burst + 1` at once (as upstream's limiter).
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<String, (f64, Instant)>,
}

impl RateLimiter {
    pub fn new(rate: u32, burst: u32) -> Self {
        RateLimiter { rate: f64::from(rate.max(1)), burst: f64::from(burst) + 1.0, buckets: HashMap::new() }
    }

    pub fn allow(&mut self, key: &str, now: Instant) -> bool {
        if self.buckets.len() > 10_000 {
            // Forget idle clients rather than grow without bound.
            let (rate, burst) = (self.rate, self.burst);
            self.buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = self.buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub fn api_router(state: ApiState) -> Router {
    let decrypting = Router::new()
        .route("/v1/verify", any(verify))
        .route("/v1/rotate", any(rotate))
        .route_layer(middleware::from_fn_with_state(state.clone(), admit));
    Router::new()
        .route("/healthz", any(|| async { "ok\n" }))
        .route("/readyz", any(readyz))
        .route("/v1/cert.pem", any(cert))
        .merge(decrypting)
        .layer(middleware::from_fn_with_state(state.clone(), instrument))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.encode()) }
        }),
    )
}

async fn instrument(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let path = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    // Lower case, as upstream's Go client labels methods.
    let method = request.method().as_str().to_ascii_lowercase();
    let start = Instant::now();
    let response = next.run(request).await;
    if let Some(path) = path.filter(|p| p.starts_with("/v1/")) {
        let code = response.status().as_u16().to_string();
        state
            .metrics
            .http_requests
            .get_or_create(&HttpLabels { path: path.clone(), code, method: method.clone() })
            .inc();
        state
            .metrics
            .http_duration
            .get_or_create(&HttpDurationLabels { path, method })
            .observe(start.elapsed().as_secs_f64());
    }
    response
}

async fn readyz(State(state): State<ApiState>) -> Response {
    if *state.ready.borrow() && !state.keyring.borrow().is_empty() {
        if *state.election_forbidden.borrow() {
            let note = "ok (leader election: RBAC forbids the Lease, running as the only writer)\n";
            return (StatusCode::OK, note).into_response();
        }
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no keys loaded yet\n").into_response()
    }
}

async fn cert(State(state): State<ApiState>) -> Response {
    let ring = state.keyring.borrow().clone();
    match ring.newest() {
        Some(entry) => {
            ([(header::CONTENT_TYPE, "application/x-pem-file")], entry.certificate.pem().to_owned()).into_response()
        }
        None => (StatusCode::INTERNAL_SERVER_ERROR, "cannot get certificate\n").into_response(),
    }
}

/// Who a request comes from: the last `X-Forwarded-For` hop, which the API server's service
/// proxy appends (earlier hops are whatever the client sent), else the peer's address.
fn client_of(headers: &HeaderMap, peer: Option<IpAddr>) -> String {
    let last_hop = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|hop| !hop.is_empty());
    match (last_hop, peer) {
        (Some(hop), _) => hop.to_owned(),
        (None, Some(ip)) => ip.to_string(),
        (None, None) => String::new(),
    }
}

/// Before a decrypting request's body is read: the per-client rate limit, then a turn among
/// [`HEAVY_REQUESTS`].
async fn admit(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let client = client_of(request.headers(), peer);
    let key = format!("{} {client}", request.uri().path());
    let allowed = state.limiter.lock().map(|mut l| l.allow(&key, Instant::now())).unwrap_or(true);
    if !allowed {
        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], "rate limit exceeded, retry later\n")
            .into_response();
    }
    let Ok(Ok(_permit)) = tokio::time::timeout(HEAVY_WAIT, state.heavy.clone().acquire_owned()).await else {
        return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], "busy, retry later\n").into_response();
    };
    next.run(request).await
}

/// Exactly one SealedSecret, in JSON or YAML, with at most [`MAX_ITEMS`] items.
fn parse_one(body: &[u8]) -> Option<SealedSecret> {
    let text = std::str::from_utf8(body).ok()?;
    let mut docs = yaml::parse_documents(text).ok()?;
    if docs.len() != 1 {
        return None;
    }
    let ss: SealedSecret = serde_json::from_value(docs.remove(0)).ok()?;
    (ss.spec.encrypted_data.len() <= MAX_ITEMS).then_some(ss)
}

/// Whether every item of the posted SealedSecret decrypts with a loaded key. Templates are
/// not rendered and nothing of the plaintext is looked at, so the answer (its code, body and
/// time) tells nothing about what the items hold: a template that fails on a condition of
/// the plaintext would otherwise answer that condition, one bit per request.
async fn verify(State(state): State<ApiState>, body: Bytes) -> Response {
    let ring = state.keyring.borrow().clone();
    let options = state.unseal_options;
    let result = tokio::task::spawn_blocking(move || {
        let ss = parse_one(&body)?;
        Some(open_items(&ss, ring.keys(), options).is_ok())
    })
    .await;
    match result {
        Ok(Some(true)) => StatusCode::OK.into_response(),
        Ok(Some(false)) => StatusCode::CONFLICT.into_response(),
        Ok(None) | Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Re-seal every item to the newest key, keeping everything else (including `template.data`,
/// which upstream turns into static items). Templates are not rendered: like verify, rotate
/// must not answer anything about the plaintext.
fn reseal(ss: &SealedSecret, ring: &Keyring) -> Result<SealedSecret, String> {
    let newest = ring.newest().ok_or("no keys")?;
    let name = ss.metadata.name.clone().unwrap_or_default();
    let namespace = ss.metadata.namespace.clone().unwrap_or_default();
    let label = Scope::from_annotations(ss.metadata.annotations.as_ref()).label(&namespace, &name);
    let mut rng = rand::rng();
    let mut out = ss.clone();
    let mut reseal_item = |item: &str| -> Result<String, String> {
        let bytes = STANDARD.decode(item).map_err(|_| "an item is not valid base64".to_owned())?;
        let plain = hybrid_decrypt(ring.keys(), &bytes, &label).map_err(|e| e.to_string())?;
        let sealed = hybrid_encrypt(&mut rng, newest.certificate.public_key(), plain.expose(), &label)
            .map_err(|e| e.to_string())?;
        Ok(STANDARD.encode(sealed))
    };
    for value in out.spec.encrypted_data.values_mut() {
        *value = reseal_item(value)?;
    }
    if let Some(data) = out.spec.data.as_mut() {
        *data = reseal_item(data)?;
    }
    out.metadata.creation_timestamp = None;
    out.metadata.deletion_timestamp = None;
    out.metadata.generation = None;
    out.metadata.resource_version = None;
    out.metadata.uid = None;
    out.metadata.managed_fields = None;
    out.status = None;
    // Our key annotation is updated where it was, never added: kubeseal --re-encrypt's diff
    // stays the items alone, as with upstream's controller.
    if let Some(annotation) = out.metadata.annotations.as_mut().and_then(|a| a.get_mut(SEALING_KEY_ANNOTATION)) {
        *annotation = newest.fingerprint.clone();
    }
    Ok(out)
}

async fn rotate(State(state): State<ApiState>, body: Bytes) -> Response {
    let ring = state.keyring.borrow().clone();
    let result = tokio::task::spawn_blocking(move || {
        let ss = parse_one(&body).ok_or_else(|| "cannot read the SealedSecret".to_owned())?;
        reseal(&ss, &ring)
    })
    .await;
    match result {
        Ok(Ok(resealed)) => match serde_json::to_vec(&resealed) {
            Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        },
        Ok(Err(message)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot re-encrypt: {message}\n")).into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Time bounds of one HTTP server, from `--read-timeout` and `--write-timeout`.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// For a request's headers (also while a kept-alive connection waits for the next one).
    pub read: Duration,
    /// Added to `read`: the bound on a connection from its first byte to its last.
    pub write: Duration,
}

/// Serve `router` on `addr` until the process stops, with at most [`MAX_CONNECTIONS`] open
/// connections, each bounded in time: a client that sends slowly, or not at all, is cut off.
pub async fn serve(addr: SocketAddr, router: Router, timeouts: Timeouts) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "serving HTTP");
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, usually: wait rather than spin.
                tracing::warn!(%addr, %error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let mut request = request.map(axum::body::Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(request)
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.read)
                .serve_connection(TokioIo::new(stream), service);
            if tokio::time::timeout(timeouts.read + timeouts.write, connection).await.is_err() {
                tracing::debug!(%peer, "closed a connection that outlived the read and write timeouts");
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_the_last_forwarded_hop_or_the_peer() {
        use axum::http::HeaderValue;
        let peer = Some(IpAddr::from([10, 0, 0, 9]));
        let mut headers = HeaderMap::new();
        assert_eq!(client_of(&headers, peer), "10.0.0.9");
        headers.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4, 10.1.1.1"));
        assert_eq!(client_of(&headers, peer), "10.1.1.1", "the hop the proxy appended, not the client's choice");
        headers.append("x-forwarded-for", HeaderValue::from_static("10.2.2.2"));
        assert_eq!(client_of(&headers, peer), "10.2.2.2");
    }

    #[test]
    fn rate_limiter_allows_burst_then_refills() {
        let mut limiter = RateLimiter::new(2, 2);
        let t0 = Instant::now();
        assert!(limiter.allow("a", t0));
        assert!(limiter.allow("a", t0));
        assert!(limiter.allow("a", t0), "burst + 1, as upstream");
        assert!(!limiter.allow("a", t0));
        assert!(limiter.allow("b", t0), "clients are limited separately");
        assert!(limiter.allow("a", t0 + std::time::Duration::from_millis(600)));
    }
}
