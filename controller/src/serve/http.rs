//! The HTTP API kubeseal and `sealant` talk to, and the metrics endpoint.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper_util::rt::{TokioIo, TokioTimer};
use sealant_core::{Scope, hybrid_decrypt, hybrid_encrypt, yaml};
use sealant_crds::{SEALING_KEY_ANNOTATION, SealedSecret, UnsealOptions, open_items};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

use crate::keys::keyring::Keyring;
use crate::serve::metrics::{HttpDurationLabels, HttpLabels, Metrics};
use crate::serve::proxies::TrustedProxies;

/// Largest request body: a Secret is at most 1 MiB, sealed and base64-encoded ~1.4 MiB.
const BODY_LIMIT: usize = 4 << 20;
/// Verify and rotate requests decrypting at once, each holding at most one body: with the
/// parsed copy, this keeps their memory well under the Deployment's 256 MiB limit.
pub const HEAVY_REQUESTS: usize = 4;
/// How long a verify or rotate request waits for its turn before it is answered 503.
const HEAVY_WAIT: Duration = Duration::from_secs(10);
/// Items one request may ask to decrypt: bounds the RSA work a request costs.
const MAX_ITEMS: usize = 512;
/// Nodes a posted SealedSecret may hold (its items, their keys, metadata, template): counted
/// before a tree is built, so a body of a million tiny items costs nothing but its bytes.
const MAX_NODES: usize = 8 * MAX_ITEMS;
/// Decrypting requests whose bodies are being read at once. A body is read before a
/// [`HEAVY_REQUESTS`] permit is taken (a slow upload holds no decrypt permit), so this bounds
/// the memory bodies take: `UPLOADS × BODY_LIMIT`.
pub const UPLOADS: usize = 8;
/// How long a request body may take to arrive.
const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// Open connections per server. At the cap, a new connection closes the oldest one that is not
/// in a request, so connections held open (idle or slow) cannot keep the probes out.
const MAX_CONNECTIONS: usize = 512;
/// Open connections from one address.
const MAX_PER_PEER: usize = 64;
/// How long a new connection may stay silent before it is closed.
const FIRST_BYTE: Duration = Duration::from_secs(5);
/// Clients the rate limiter remembers at most.
const MAX_CLIENTS: usize = 10_000;

#[derive(Clone, Debug)]
pub struct ApiState {
    pub keyring: watch::Receiver<Arc<Keyring>>,
    pub ready: watch::Receiver<bool>,
    pub metrics: Arc<Metrics>,
    pub limiter: Arc<Mutex<RateLimiter>>,
    pub unseal_options: UnsealOptions,
    /// Permits for the requests that decrypt (see [`HEAVY_REQUESTS`]).
    pub heavy: Arc<Semaphore>,
    /// Permits to read a decrypting request's body (see [`UPLOADS`]).
    pub uploads: Arc<Semaphore>,
    /// RBAC forbids the leader Lease: this replica writes as the only one.
    pub election_forbidden: watch::Receiver<bool>,
    /// Whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<TrustedProxies>,
}

/// Per-client token buckets: `rate` per second, `burst + 1` at once (as upstream's limiter).
/// A client is an address and a route, so an entry has a fixed size, and there are at most
/// [`MAX_CLIENTS`] of them.
///
/// Ours rather than `governor`'s keyed limiter, whose map grows with every key until
/// `retain_recent` is called: this one can never hold more than [`MAX_CLIENTS`] entries, the
/// bound that round 3's memory attack through `X-Forwarded-For` called for. The two semaphores
/// ([`HEAVY_REQUESTS`], [`UPLOADS`]) stay too: tower's `ConcurrencyLimit` waits for a permit
/// where these answer 503 at once, and `LoadShed` would shed every route, `/healthz` included.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<(&'static str, IpAddr), (f64, Instant)>,
}

impl RateLimiter {
    pub fn new(rate: u32, burst: u32) -> Self {
        RateLimiter { rate: f64::from(rate.max(1)), burst: f64::from(burst) + 1.0, buckets: HashMap::new() }
    }

    pub fn allow(&mut self, route: &'static str, client: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= MAX_CLIENTS {
            // Forget clients whose bucket is full again: they are as if never seen.
            let (rate, burst) = (self.rate, self.burst);
            self.buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
            if self.buckets.len() >= MAX_CLIENTS {
                // Ten thousand clients all within their burst: start afresh rather than grow.
                self.buckets.clear();
            }
            self.buckets.shrink_to(MAX_CLIENTS);
        }
        let (tokens, at) = self.buckets.entry((route, client)).or_insert((self.burst, now));
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
    // Each route answers its own methods (GET also answers HEAD); any other is 405.
    let decrypting = Router::new()
        .route("/v1/verify", post(verify))
        .route("/v1/rotate", post(rotate))
        .route_layer(middleware::from_fn_with_state(state.clone(), admit));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/v1/cert.pem", get(cert))
        .merge(decrypting)
        .layer(middleware::from_fn_with_state(state.clone(), instrument))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// The last encoding of the metrics, and when it started.
type Encoded = tokio::sync::Mutex<Option<(Instant, Arc<str>)>>;

/// `/metrics`, which anyone who reaches the port may ask for as often as they like: one encoding
/// at a time, on a blocking thread (never on the async workers that unseal), and every request
/// that waited for it answered by an encoding that started after it arrived, so no answer is
/// older than its request and a flood of scrapes costs at most one core.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    let encoded = Arc::new(Encoded::default());
    Router::new().route(
        "/metrics",
        get(move || {
            let (metrics, encoded) = (metrics.clone(), encoded.clone());
            async move {
                let arrived = Instant::now();
                let mut last = encoded.lock().await;
                let text = match &*last {
                    Some((started, text)) if *started >= arrived => text.clone(),
                    _ => {
                        let started = Instant::now();
                        let text: Arc<str> =
                            tokio::task::spawn_blocking(move || metrics.encode()).await.unwrap_or_default().into();
                        *last = Some((started, text.clone()));
                        text
                    }
                };
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text.to_string())
            }
        }),
    )
}

async fn instrument(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let path = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let method = method_label(request.method()).to_owned();
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

/// The `method` label: lower case, as upstream's Go client writes it, for the methods HTTP
/// defines; any other is `other`, so that a client cannot add label values.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "get",
        Method::HEAD => "head",
        Method::POST => "post",
        Method::PUT => "put",
        Method::DELETE => "delete",
        Method::PATCH => "patch",
        Method::OPTIONS => "options",
        Method::CONNECT => "connect",
        Method::TRACE => "trace",
        _ => "other",
    }
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

/// Who a request comes from: from a trusted proxy (the API server's service proxy), the last
/// `X-Forwarded-For` hop, which it appends (earlier hops are whatever the client sent), when it
/// is an address; else the peer's address.
fn client_of(headers: &HeaderMap, peer: IpAddr, trusted: &TrustedProxies) -> IpAddr {
    if !trusted.trusts(peer) {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|hop| !hop.is_empty())
        .and_then(|hop| hop.parse().ok())
        .unwrap_or(peer)
}

fn busy() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], "busy, retry later\n").into_response()
}

/// A decrypting request, in turn: the per-client rate limit; its body, read whole within
/// [`BODY_DEADLINE`] among [`UPLOADS`]; then a turn among [`HEAVY_REQUESTS`] for the parse and
/// the RSA work.
async fn admit(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let route = if request.uri().path() == "/v1/rotate" { "/v1/rotate" } else { "/v1/verify" };
    let client = client_of(request.headers(), peer, &state.trusted_proxies);
    let allowed = state.limiter.lock().unwrap_or_else(PoisonError::into_inner).allow(route, client, Instant::now());
    if !allowed {
        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], "rate limit exceeded, retry later\n")
            .into_response();
    }
    let (parts, body) = request.into_parts();
    let bytes = {
        let Ok(Ok(_upload)) = tokio::time::timeout(HEAVY_WAIT, state.uploads.clone().acquire_owned()).await else {
            return busy();
        };
        match tokio::time::timeout(BODY_DEADLINE, axum::body::to_bytes(body, BODY_LIMIT)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => return (StatusCode::PAYLOAD_TOO_LARGE, "the body is too large\n").into_response(),
            Err(_) => return (StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time\n").into_response(),
        }
    };
    let Ok(Ok(_permit)) = tokio::time::timeout(HEAVY_WAIT, state.heavy.clone().acquire_owned()).await else {
        return busy();
    };
    // At work: its connection is no longer one to close to make room.
    if let Some(cell) = parts.extensions.get::<PhaseCell>() {
        cell.set(Phase::Working);
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// Exactly one SealedSecret, in JSON or YAML, with at most [`MAX_ITEMS`] items (and
/// [`MAX_NODES`] nodes, refused before any tree is built).
fn parse_one(body: &[u8]) -> Option<SealedSecret> {
    let text = std::str::from_utf8(body).ok()?;
    let mut docs = yaml::parse_documents_bounded(text, MAX_NODES).ok()?;
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

/// Why `/v1/rotate` cannot re-seal a SealedSecret; the text is the answer's, as upstream words
/// it where it can.
#[derive(Debug, thiserror::Error)]
enum ResealError {
    #[error("cannot read the SealedSecret")]
    Unreadable,
    #[error("no keys")]
    NoKeys,
    #[error("an item is not valid base64")]
    NotBase64,
    #[error(transparent)]
    Crypto(#[from] sealant_core::HybridError),
}

/// Re-seal every item to the newest key, keeping everything else (including `template.data`,
/// which upstream turns into static items). Templates are not rendered: like verify, rotate
/// must not answer anything about the plaintext.
fn reseal(ss: &SealedSecret, ring: &Keyring) -> Result<SealedSecret, ResealError> {
    let newest = ring.newest().ok_or(ResealError::NoKeys)?;
    let name = ss.metadata.name.clone().unwrap_or_default();
    let namespace = ss.metadata.namespace.clone().unwrap_or_default();
    let label = Scope::from_annotations(ss.metadata.annotations.as_ref()).label(&namespace, &name);
    let mut rng = rand::rng();
    let mut out = ss.clone();
    let mut reseal_item = |item: &str| -> Result<String, ResealError> {
        let bytes = STANDARD.decode(item).map_err(|_| ResealError::NotBase64)?;
        let plain = hybrid_decrypt(ring.keys(), &bytes, &label)?;
        let sealed = hybrid_encrypt(&mut rng, newest.certificate.public_key(), plain.expose(), &label)?;
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
        let ss = parse_one(&body).ok_or(ResealError::Unreadable)?;
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

/// The open connections of one server: at most [`MAX_CONNECTIONS`], [`MAX_PER_PEER`] from one
/// address. When a new one would pass a cap, a connection (of that peer, or of all) is closed to
/// make room: the oldest idle one, else the oldest whose request is still waiting (for its body
/// or a turn at the decrypting work), which a client can send again. Only requests at work are
/// never closed, and there are at most [`HEAVY_REQUESTS`] of those: so a new connection, a
/// kubelet probe's or another client's behind the same proxy, always gets in.
#[derive(Debug, Default)]
struct Connections {
    open: Mutex<Vec<Open>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// What a connection is doing, as [`Connections`] weighs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    Idle = 0,
    /// In a request that does not wait: answered at once.
    Quick = 1,
    /// In a decrypting request not yet at work: reading its body, or waiting for a turn.
    Waiting = 2,
    /// In a decrypting request at work.
    Working = 3,
}

/// A connection's [`Phase`], shared between the server and the request on it.
#[derive(Clone, Debug, Default)]
struct PhaseCell(Arc<std::sync::atomic::AtomicU8>);

impl PhaseCell {
    fn get(&self) -> Phase {
        match self.0.load(std::sync::atomic::Ordering::Acquire) {
            1 => Phase::Quick,
            2 => Phase::Waiting,
            3 => Phase::Working,
            _ => Phase::Idle,
        }
    }

    fn set(&self, phase: Phase) {
        self.0.store(phase as u8, std::sync::atomic::Ordering::Release);
    }
}

#[derive(Debug)]
struct Open {
    id: u64,
    peer: IpAddr,
    /// HTTP/1 serves one request at a time.
    phase: PhaseCell,
    close: Arc<tokio::sync::Notify>,
}

/// A connection's place among [`Connections`], given back when it is dropped.
struct Slot {
    id: u64,
    connections: Arc<Connections>,
    phase: PhaseCell,
    close: Arc<tokio::sync::Notify>,
}

impl Connections {
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        // The oldest connection `among` accepts that may be closed: idle first, then waiting.
        let victim = |open: &[Open], among: &dyn Fn(&Open) -> bool| {
            [Phase::Idle, Phase::Waiting]
                .into_iter()
                .find_map(|phase| open.iter().position(|o| among(o) && o.phase.get() == phase))
        };
        if open.iter().filter(|o| o.peer == peer).count() >= MAX_PER_PEER {
            let oldest = victim(&open, &|o| o.peer == peer)?;
            open.remove(oldest).close.notify_one();
        }
        if open.len() >= MAX_CONNECTIONS {
            let oldest = victim(&open, &|_| true)?;
            open.remove(oldest).close.notify_one();
        }
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let phase = PhaseCell::default();
        let close = Arc::new(tokio::sync::Notify::new());
        open.push(Open { id, peer, phase: phase.clone(), close: close.clone() });
        Some(Slot { id, connections: self.clone(), phase, close })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.connections.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|o| o.id != self.id);
    }
}

/// Marks its connection as in a request (`phase`) while it lives, idle again after.
struct InRequest(PhaseCell);

impl InRequest {
    fn new(cell: PhaseCell, phase: Phase) -> Self {
        cell.set(phase);
        InRequest(cell)
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.set(Phase::Idle);
    }
}

/// Serve `router` on `addr` until the process stops, with bounded connections (see
/// [`Connections`]), each bounded in time: one that sends nothing within [`FIRST_BYTE`], or
/// sends slowly, is cut off, so held connections cannot keep the probes out.
pub async fn serve(addr: SocketAddr, router: Router, timeouts: Timeouts) -> crate::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| crate::Error::Listen { addr, source })?;
    tracing::info!(%addr, "serving HTTP");
    let connections = Arc::new(Connections::default());
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
        let Some(slot) = connections.admit(peer.ip()) else {
            drop(stream);
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            // Silent for FIRST_BYTE, or made room for by a newer connection meanwhile: closed.
            let mut first = [0u8; 1];
            let spoke = tokio::select! {
                peeked = tokio::time::timeout(FIRST_BYTE, stream.peek(&mut first)) => matches!(peeked, Ok(Ok(1..))),
                () = slot.close.notified() => false,
            };
            if !spoke {
                return;
            }
            let cell = slot.phase.clone();
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let mut request = request.map(axum::body::Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                request.extensions_mut().insert(cell.clone());
                let waits = matches!(request.uri().path(), "/v1/verify" | "/v1/rotate");
                let marked = InRequest::new(cell.clone(), if waits { Phase::Waiting } else { Phase::Quick });
                let call = router.clone().oneshot(request);
                async move {
                    let response = call.await;
                    drop(marked);
                    response
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.read)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                outcome = tokio::time::timeout(timeouts.read + timeouts.write, connection) => {
                    if outcome.is_err() {
                        tracing::debug!(%peer, "closed a connection that outlived the read and write timeouts");
                    }
                }
                () = slot.close.notified() => tracing::debug!(%peer, "closed an idle connection to make room"),
            }
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_the_last_forwarded_hop_from_a_trusted_proxy_else_the_peer() {
        use axum::http::HeaderValue;
        let peer = IpAddr::from([10, 0, 0, 9]);
        let proxy = TrustedProxies::parse("10.0.0.9").unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(client_of(&headers, peer, &proxy), peer);
        headers.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4, 10.1.1.1"));
        assert_eq!(client_of(&headers, peer, &proxy).to_string(), "10.1.1.1", "the hop the proxy appended");
        assert_eq!(client_of(&headers, peer, &TrustedProxies::default()), peer, "anyone else is who they are");
        headers.append("x-forwarded-for", HeaderValue::from_static("10.2.2.2"));
        assert_eq!(client_of(&headers, peer, &proxy).to_string(), "10.2.2.2");
        let long = HeaderValue::from_str(&"x".repeat(30_000)).unwrap();
        headers.append("x-forwarded-for", long);
        assert_eq!(client_of(&headers, peer, &proxy), peer, "a hop that is no address is not a client");
    }

    #[test]
    fn rate_limiter_allows_burst_then_refills() {
        let mut limiter = RateLimiter::new(2, 2);
        let t0 = Instant::now();
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        assert!(limiter.allow("/v1/verify", a, t0));
        assert!(limiter.allow("/v1/verify", a, t0));
        assert!(limiter.allow("/v1/verify", a, t0), "burst + 1, as upstream");
        assert!(!limiter.allow("/v1/verify", a, t0));
        assert!(limiter.allow("/v1/rotate", a, t0), "routes are limited separately");
        assert!(limiter.allow("/v1/verify", b, t0), "clients are limited separately");
        assert!(limiter.allow("/v1/verify", a, t0 + std::time::Duration::from_millis(600)));
    }

    #[test]
    fn the_rate_limiter_remembers_a_bounded_number_of_clients() {
        let mut limiter = RateLimiter::new(2, 2);
        let t0 = Instant::now();
        for i in 0..50_000u32 {
            limiter.allow("/v1/verify", IpAddr::from(i.to_be_bytes()), t0);
            assert!(limiter.buckets.len() <= MAX_CLIENTS);
        }
    }

    #[test]
    fn unknown_methods_are_one_label_value() {
        assert_eq!(method_label(&Method::POST), "post");
        assert_eq!(method_label(&Method::from_bytes(&[b'X'; 1000]).unwrap()), "other");
    }

    #[test]
    fn held_connections_make_room_for_new_ones() {
        let connections = Arc::new(Connections::default());
        let attacker = IpAddr::from([10, 0, 0, 66]);
        let held: Vec<Slot> = (0..MAX_PER_PEER * 2).filter_map(|_| connections.admit(attacker)).collect();
        assert_eq!(connections.open.lock().unwrap().len(), MAX_PER_PEER, "one peer holds at most its share");
        let busy: Vec<_> = held.iter().map(|s| InRequest::new(s.phase.clone(), Phase::Working)).collect();
        assert!(connections.admit(attacker).is_none(), "every one at work: the new one waits");
        drop(busy);
        let others: Vec<Slot> =
            (0..MAX_CONNECTIONS as u32).filter_map(|i| connections.admit(IpAddr::from(i.to_be_bytes()))).collect();
        assert_eq!(others.len(), MAX_CONNECTIONS);
        let probe = connections.admit(IpAddr::from([10, 0, 0, 1]));
        assert!(probe.is_some(), "the probe's connection closes the oldest idle one");
        assert_eq!(connections.open.lock().unwrap().len(), MAX_CONNECTIONS);
    }

    /// Issue 34: requests waiting for a body or a turn held their connections, so a proxy's 64
    /// or 512 addresses kept out the probes and every other client.
    #[test]
    fn waiting_requests_make_room_and_only_work_in_progress_is_kept() {
        let connections = Arc::new(Connections::default());
        let proxy = IpAddr::from([10, 0, 0, 2]);
        let waiting: Vec<Slot> = (0..MAX_PER_PEER).filter_map(|_| connections.admit(proxy)).collect();
        let marks: Vec<_> = waiting.iter().map(|s| InRequest::new(s.phase.clone(), Phase::Waiting)).collect();
        let working = InRequest::new(waiting[1].phase.clone(), Phase::Working);
        let next = connections.admit(proxy);
        assert!(next.is_some(), "another client behind the proxy gets in");
        let open = connections.open.lock().unwrap().iter().map(|o| o.id).collect::<Vec<_>>();
        assert!(!open.contains(&waiting[0].id), "the oldest waiting request made room");
        assert!(open.contains(&waiting[1].id), "the one at work is kept");
        // From as many addresses as the cap, all waiting: a probe still gets in.
        drop((marks, working, next, waiting));
        let many: Vec<Slot> =
            (0..MAX_CONNECTIONS as u32).filter_map(|i| connections.admit(IpAddr::from(i.to_be_bytes()))).collect();
        let _marks: Vec<_> = many.iter().map(|s| InRequest::new(s.phase.clone(), Phase::Waiting)).collect();
        assert!(connections.admit(IpAddr::from([127, 0, 0, 1])).is_some(), "kubelet's probe gets in");
    }
}
