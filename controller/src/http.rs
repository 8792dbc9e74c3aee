//! The HTTP API kubeseal and `sealant` talk to, and the metrics endpoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sealant_core::{Scope, hybrid_decrypt, hybrid_encrypt, yaml};
use sealant_crds::{SEALING_KEY_ANNOTATION, SealedSecret, UnsealOptions, unseal};
use tokio::sync::watch;

use crate::keyring::Keyring;
use crate::metrics::{HttpDurationLabels, HttpLabels, Metrics};

/// Largest request body: a Secret is at most 1 MiB, sealed and base64-encoded ~1.4 MiB.
const BODY_LIMIT: usize = 4 << 20;

#[derive(Clone, Debug)]
pub struct ApiState {
    pub keyring: watch::Receiver<Arc<Keyring>>,
    pub ready: watch::Receiver<bool>,
    pub metrics: Arc<Metrics>,
    pub limiter: Arc<Mutex<RateLimiter>>,
    pub unseal_options: UnsealOptions,
}

/// Per-client token buckets (GCRA-like): `rate` per second, `burst` at once.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<String, (f64, Instant)>,
}

impl RateLimiter {
    pub fn new(rate: u32, burst: u32) -> Self {
        RateLimiter { rate: f64::from(rate.max(1)), burst: f64::from(burst.max(1)), buckets: HashMap::new() }
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
    Router::new()
        .route("/healthz", any(|| async { "ok\n" }))
        .route("/readyz", any(readyz))
        .route("/v1/cert.pem", any(cert))
        .route("/v1/verify", any(verify))
        .route("/v1/rotate", any(rotate))
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
    let method = request.method().to_string();
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

/// Exactly one SealedSecret, in JSON or YAML.
fn parse_one(body: &[u8]) -> Option<SealedSecret> {
    let text = std::str::from_utf8(body).ok()?;
    let mut docs = yaml::parse_documents(text).ok()?;
    if docs.len() != 1 {
        return None;
    }
    serde_json::from_value(docs.remove(0)).ok()
}

async fn verify(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let client = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()).unwrap_or("");
    let allowed =
        state.limiter.lock().map(|mut l| l.allow(&format!("/v1/verify {client}"), Instant::now())).unwrap_or(true);
    if !allowed {
        return StatusCode::TOO_MANY_REQUESTS.into_response();
    }
    let Some(ss) = parse_one(&body) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let ring = state.keyring.borrow().clone();
    let options = state.unseal_options;
    let result = tokio::task::spawn_blocking(move || unseal(&ss, ring.keys(), options).is_ok()).await;
    match result {
        Ok(true) => StatusCode::OK.into_response(),
        Ok(false) => StatusCode::CONFLICT.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Re-seal every item to the newest key, keeping everything else (including `template.data`,
/// which upstream turns into static items).
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
    // Templates must still render with the new items.
    unseal(ss, ring.keys(), UnsealOptions::default()).map_err(|e| e.to_string())?;
    out.metadata.creation_timestamp = None;
    out.metadata.deletion_timestamp = None;
    out.metadata.generation = None;
    out.metadata.resource_version = None;
    out.metadata.uid = None;
    out.metadata.managed_fields = None;
    out.status = None;
    out.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(SEALING_KEY_ANNOTATION.to_owned(), newest.fingerprint.clone());
    Ok(out)
}

async fn rotate(State(state): State<ApiState>, body: Bytes) -> Response {
    let Some(ss) = parse_one(&body) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "cannot read the SealedSecret\n").into_response();
    };
    let ring = state.keyring.borrow().clone();
    let result = tokio::task::spawn_blocking(move || reseal(&ss, &ring)).await;
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

/// Serve `router` on `addr` until the process stops.
pub async fn serve(addr: SocketAddr, router: Router) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "serving HTTP");
    axum::serve(listener, router).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_allows_burst_then_refills() {
        let mut limiter = RateLimiter::new(2, 2);
        let t0 = Instant::now();
        assert!(limiter.allow("a", t0));
        assert!(limiter.allow("a", t0));
        assert!(!limiter.allow("a", t0));
        assert!(limiter.allow("b", t0), "clients are limited separately");
        assert!(limiter.allow("a", t0 + std::time::Duration::from_millis(600)));
    }
}
