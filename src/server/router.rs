//! The routes and the layers every request passes, outermost first:
//!
//! 1. the access log (`tracing`, target `xqdb::access`);
//! 2. the browser guard: a `Host` that is not an IP address, `localhost` or an allowed name is
//!    refused (403: DNS rebinding), a body not sent as `application/json` is refused (415: no
//!    "simple" cross-origin request can write), an `Origin` not allowed is refused (403);
//! 3. CORS for the allowed origins (preflights answered here, for them only);
//! 4. the bearer token, when the server has one (every route but `/health`);
//! 5. load shedding over a global concurrency limit (503 with `Retry-After`), then the
//!    request deadline (408);
//! 6. the body limit (413), then the route, whose work runs on the blocking pool.

use super::api::{
    is_json, not_json, AddRequest, Added, Answer, ApiError, Body, Deleted, ErrorBody, Health,
    ListQuery, Page, Query as SearchQuery, SearchAnswer, SearchRequest,
};
use super::handlers::State;
use super::TokenDigest;
use crate::index::FileHit;
use crate::types::{Dtype, FirstPass, Fusion, Hit, LexicalSettings, Metric, Passage, SearchMode};
use crate::Stats;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State as With};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi;

/// Who may talk to the server from a browser, and the token.
pub(crate) struct Guard {
    /// Host names allowed besides IP addresses and `localhost` (lower case).
    pub allow_hosts: Vec<String>,
    /// Origins allowed (`scheme://host[:port]`, lower case, no trailing slash).
    pub allow_origins: Vec<String>,
    /// The bearer token's digest.
    pub token: Option<TokenDigest>,
}

/// An origin as compared: lower case, without a trailing slash.
pub(crate) fn normal_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

impl Guard {
    /// The guard of a server with `options`: host names and origins as compared, the token's
    /// digest (trimmed, as it is checked).
    pub fn new(options: &super::ServerOptions) -> Guard {
        Guard {
            allow_hosts: options
                .allow_hosts
                .iter()
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            allow_origins: options
                .allow_origins
                .iter()
                .map(|o| normal_origin(o))
                .collect(),
            token: options.token.as_deref().map(|t| TokenDigest::new(t.trim())),
        }
    }

    /// Whether a `Host` header names this server: an IP address (a web page cannot make a
    /// browser send one that resolves elsewhere), `localhost` or a subdomain of it, or a name
    /// given with `--allow-host`.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let name = if let Some(rest) = host.strip_prefix('[') {
            // [v6]:port
            match rest.split_once(']') {
                Some((ip, _)) => return ip.parse::<std::net::Ipv6Addr>().is_ok(),
                None => return false,
            }
        } else {
            match host.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                Some(_) => return false,
                None => host.as_str(),
            }
        };
        let name = name.trim_end_matches('.');
        name.parse::<std::net::Ipv4Addr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self.allow_hosts.iter().any(|h| h == name)
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let o = normal_origin(origin);
        self.allow_origins.contains(&o)
    }
}

/// Host, media type and origin checks (see the module's docs).
async fn guard(With(g): With<Arc<Guard>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if let Some(host) = headers.get(header::HOST) {
        let ok = host.to_str().is_ok_and(|h| g.host_allowed(h));
        if !ok {
            return ApiError::new(
                403,
                format!(
                    "Host {:?} is not this server's: use its address or localhost, or start it \
                     with --allow-host NAME",
                    String::from_utf8_lossy(host.as_bytes())
                ),
            )
            .into_response();
        }
    }
    let sends_body = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
    if sends_body && !is_json(headers) {
        return not_json().into_response();
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let ok = origin.to_str().is_ok_and(|o| g.origin_allowed(o));
        if !ok {
            return ApiError::new(
                403,
                format!(
                    "requests from the web origin {:?} are refused; start the server with \
                     --allow-origin URL to allow one",
                    String::from_utf8_lossy(origin.as_bytes())
                ),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// The bearer token, on every route but `/health`.
async fn token(With(g): With<Arc<Guard>>, req: Request, next: Next) -> Response {
    if let Some(token) = &g.token {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // The scheme name is case-insensitive (RFC 9110, 11.1).
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(rest)
            })
            .is_some_and(|t| token.matches(t.trim()));
        if req.uri().path() != "/health" && !ok {
            return ApiError::new(
                401,
                "missing or wrong bearer token (Authorization: Bearer TOKEN)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// One line per request through `tracing` (target `xqdb::access`).
async fn access_log(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let r = next.run(req).await;
    tracing::info!(
        target: "xqdb::access",
        method = %method,
        path = %path,
        status = r.status().as_u16(),
        micros = start.elapsed().as_micros() as u64,
    );
    r
}

/// Errors of the shedding and deadline layers as answers.
async fn overloaded(e: tower::BoxError) -> ApiError {
    if e.is::<tower::load_shed::error::Overloaded>() {
        ApiError::new(503, "the server is busy; try again")
    } else if e.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(408, "the request took longer than the server's deadline")
    } else {
        ApiError::new(500, format!("the request failed: {e}"))
    }
}

/// Runs `f` on the blocking pool (the index's work blocks: scans, encodes, fsyncs).
async fn blocking<T: Send + 'static>(
    state: &Arc<State>,
    f: impl FnOnce(&State) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let s = state.clone();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|e| ApiError::new(500, format!("the request failed: {e}")))?
}

/// A path segment, percent-decoded; 400 for bad escapes or invalid UTF-8.
type Id = Result<Path<String>, axum::extract::rejection::PathRejection>;

/// Whether every `%` of a raw path starts an escape of two hex digits (the decoder keeps a
/// bad escape as it is; the API refuses it).
fn escapes_are_valid(raw: &str) -> bool {
    let b = raw.as_bytes();
    b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || (b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

fn id_of(uri: &Uri, id: Id) -> Result<String, ApiError> {
    let bad = || ApiError::new(400, "the passage id is not valid percent-encoded UTF-8");
    if !escapes_are_valid(uri.path()) {
        return Err(bad());
    }
    id.map(|Path(id)| id).map_err(|_| bad())
}

/// Liveness and size; needs no token.
#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)))]
async fn health(With(s): With<Arc<State>>) -> Json<Health> {
    Json(s.health())
}

/// Counts and sizes of the index.
#[utoipa::path(get, path = "/stats", responses((status = 200, body = Stats)))]
async fn stats(With(s): With<Arc<State>>) -> Result<Json<Stats>, ApiError> {
    blocking(&s, |s| s.stats()).await.map(Json)
}

/// Searches by text, by vector, or a batch of either.
#[utoipa::path(post, path = "/search", request_body = SearchRequest, responses(
    (status = 200, body = SearchAnswer),
    (status = 400, body = ErrorBody), (status = 415, body = ErrorBody),
    (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn search(
    With(s): With<Arc<State>>,
    Body(r): Body<SearchRequest>,
) -> Result<Json<SearchAnswer>, ApiError> {
    blocking(&s, move |s| s.search(r)).await.map(Json)
}

/// A page of passages in id order.
#[utoipa::path(get, path = "/passages", params(ListQuery), responses(
    (status = 200, body = Page), (status = 400, body = ErrorBody)))]
async fn list_passages(
    With(s): With<Arc<State>>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(400, e.body_text()))?;
    blocking(&s, move |s| s.list(q.after.as_deref(), q.limit))
        .await
        .map(Json)
}

/// Adds passages in one atomic, durable commit.
#[utoipa::path(post, path = "/passages", request_body = AddRequest, responses(
    (status = 200, body = Added), (status = 400, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    (status = 422, body = ErrorBody)))]
async fn add_passages(
    With(s): With<Arc<State>>,
    Body(r): Body<AddRequest>,
) -> Result<Json<Added>, ApiError> {
    blocking(&s, move |s| s.add(r)).await.map(Json)
}

/// One passage.
#[utoipa::path(get, path = "/passages/{id}", params(("id" = String, Path, description = "the passage id, percent-encoded")),
    responses((status = 200, body = Passage), (status = 404, body = ErrorBody)))]
async fn get_passage(
    With(s): With<Arc<State>>,
    uri: Uri,
    id: Id,
) -> Result<Json<Passage>, ApiError> {
    let id = id_of(&uri, id)?;
    blocking(&s, move |s| s.get(&id)).await.map(Json)
}

/// Deletes one passage in its own commit.
#[utoipa::path(delete, path = "/passages/{id}", params(("id" = String, Path, description = "the passage id, percent-encoded")),
    responses((status = 200, body = Deleted), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
async fn delete_passage(
    With(s): With<Arc<State>>,
    uri: Uri,
    id: Id,
) -> Result<Json<Deleted>, ApiError> {
    let id = id_of(&uri, id)?;
    blocking(&s, move |s| s.delete(&id)).await.map(Json)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "the OpenAPI 3.1 document")))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The OpenAPI document of the routes.
#[derive(OpenApi)]
#[openapi(
    info(title = "xqdb", description = "The local HTTP JSON API of one xqdb index (xqdb serve)."),
    paths(health, stats, search, list_passages, add_passages, get_passage, delete_passage, openapi),
    components(schemas(
        SearchRequest, SearchQuery, AddRequest, Health, Answer, SearchAnswer, Page, Added,
        Deleted, ErrorBody, Hit, Passage, FileHit, Stats, Dtype, Metric, FirstPass,
        LexicalSettings, SearchMode, Fusion
    )),
    modifiers(&Bearer)
)]
pub(crate) struct ApiDoc;

/// Declares the bearer token scheme.
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The whole application: routes and layers.
pub(crate) fn app(state: Arc<State>, guard: Arc<Guard>) -> Router {
    let o = &state.options;
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(
            guard
                .allow_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        ))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600));
    let layers = ServiceBuilder::new()
        .layer(from_fn(access_log))
        .layer(from_fn_with_state(guard.clone(), self::guard))
        .layer(cors)
        .layer(from_fn_with_state(guard, token))
        .layer(HandleErrorLayer::new(overloaded))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(
            o.threads.max(1) + o.queue.max(1),
        ))
        .timeout(o.request_timeout)
        .layer(DefaultBodyLimit::max(o.max_body_bytes));
    Router::new()
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/search", axum::routing::post(search))
        .route("/passages", get(list_passages).post(add_passages))
        .route("/passages/{id}", get(get_passage).delete(delete_passage))
        .route("/openapi.json", get(openapi))
        .fallback(|req: Request| async move {
            ApiError::new(404, format!("no route {}", req.uri().path()))
        })
        .method_not_allowed_fallback(|req: Request| async move {
            ApiError::new(
                405,
                format!("{} is not allowed on {}", req.method(), req.uri().path()),
            )
        })
        .layer(layers)
        .with_state(state)
}

/// A status the server answers with (the in-process tests' and the fuzz target's check).
pub(crate) fn is_documented(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 204 | 400 | 401 | 403 | 404 | 405 | 408 | 409 | 413 | 415 | 422 | 431 | 503
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_addresses_localhost_or_allowed() {
        let g = Guard {
            allow_hosts: vec!["my-box.lan".into()],
            allow_origins: vec![],
            token: None,
        };
        for ok in [
            "127.0.0.1:7700",
            "127.0.0.1",
            "[::1]:7700",
            "localhost:7700",
            "LOCALHOST",
            "app.localhost:1",
            "10.0.0.5:80",
            "my-box.lan:7700",
            "my-box.lan.",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:80",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "[::1",
            "[evil]:80",
            "127.0.0.1:80x",
            "",
        ] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn bad_escapes_are_told() {
        assert!(escapes_are_valid("/passages/a%2Fb%20c%E3%81%82"));
        for bad in [
            "/passages/%zz",
            "/passages/%4",
            "/passages/%+A",
            "/passages/%",
        ] {
            assert!(!escapes_are_valid(bad), "{bad}");
        }
    }

    #[test]
    fn origins_compare_without_case_or_trailing_slash() {
        let g = Guard {
            allow_hosts: vec![],
            allow_origins: vec![normal_origin("tauri://localhost/")],
            token: None,
        };
        assert!(g.origin_allowed("TAURI://localhost"));
        assert!(!g.origin_allowed("http://localhost"));
        assert!(!g.origin_allowed("null"));
    }
}
