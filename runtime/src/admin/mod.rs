//! The HTTP API of `weir serve` and `weir run --admin`: JSON over HTTP/1.1, on loopback unless
//! told otherwise. It holds a [`Supervisor`] handle and the process's metrics, never a pipeline:
//! every route reads a snapshot or asks the supervisor.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | liveness: 200 while the process and its pipeline loops are alive |
//! | `GET /readyz` | readiness: 200 when every pipeline runs or is paused with its state restored, else 503 with what is not ready |
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /v1/pipelines` | every pipeline's status |
//! | `GET /v1/pipelines/{name}` | one pipeline's status |
//! | `PUT /v1/pipelines/{name}` | deploy or update: `{"pipeline": "<file text>", "module": {"name": "m.wasm", "base64": "..."}}` |
//! | `POST /v1/pipelines/{name}/pause`, `/resume`, `/rollback` | at the next commit boundary |
//! | `DELETE /v1/pipelines/{name}[?purge=true]` | stop it and leave the group; `purge` deletes its local state |
//! | `POST /v1/pipelines/{name}/dlq/replay[?from=&until=]` | send its dead-lettered records back to their source topics |
//! | `GET /v1/pipelines/{name}/state/...`, `/tables/...`, `/instances` | queries of its state (see [`query`]) |
//! | `GET /v1/pipelines/{name}/logs[?level=&limit=&after=&follow=true]` | what its guests logged and printed (see [`logs`]) |
//! | `GET /ui/` | the console, a page over this API (see [`ui`]) |
//!
//! Whatever mutates needs `Authorization: Bearer <token>` (401 otherwise, and nothing changes).
//! Reads are open unless a read token is set (`weir serve --read-token-file`): then every route
//! but `/healthz` and `/readyz` needs it (or the admin token). Connections are bounded in number
//! and time ([`conn`]); queries forwarded to other instances and range scans are bounded in
//! number ([`Options::max_heavy_queries`], 503 past it) and time, and follow no redirects.
//! Errors are `{"error": "..."}` with a status by whose fault they are: the request's 4xx,
//! Kafka's or the disk's 503, weir's 500.

mod conn;
mod logs;
mod query;
mod ui;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, HttpBody as _};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use serde::Deserialize;

use crate::api::{
    ApiError, DeployRequest, ModuleUpload, Paused, PipelineAction, Pipelines, Probe, Replayed, Undeployed,
};
use crate::error::Domain;
use crate::supervisor::{Refusal, Supervisor, Upload, Uploads};

/// What the HTTP layer holds; every request clones it, so it is one `Arc`.
#[derive(Clone)]
struct Api(std::sync::Arc<ApiState>);

impl std::ops::Deref for Api {
    type Target = ApiState;

    fn deref(&self) -> &ApiState {
        &self.0
    }
}

struct ApiState {
    supervisor: Supervisor,
    /// The bearer token of mutating requests; `None` serves only the read routes.
    token: Option<String>,
    /// The bearer token reads need, when the operator set one.
    read_token: Option<String>,
    /// Permits for queries that leave the HTTP thread for long: forwards and range scans.
    heavy: std::sync::Arc<tokio::sync::Semaphore>,
    /// Largest deploy body, in bytes.
    max_upload: usize,
    /// Forwards queries to the instance that owns their partition.
    agent: ureq::Agent,
}

/// How the API is served.
pub struct Options {
    pub listen: SocketAddr,
    /// `None`: read-only (`weir run --admin`).
    pub token: Option<String>,
    /// What reads need, if anything.
    pub read_token: Option<String>,
    /// Largest request body, in bytes (413 past it).
    pub max_upload: usize,
    /// Connections: how many, and how long their headers may take.
    pub connections: conn::Limits,
    /// Most forwarded queries and range scans running at once; more are answered 503.
    pub max_heavy_queries: usize,
    /// Longest a forwarded query may take.
    pub forward_timeout: Duration,
}

/// Forwarded queries and range scans that may run at once by default.
pub const MAX_HEAVY_QUERIES: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(64) {
    Some(n) => n,
    None => unreachable!(),
};

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            token: None,
            read_token: None,
            max_upload: 64 << 20,
            connections: conn::Limits::default(),
            max_heavy_queries: MAX_HEAVY_QUERIES.get(),
            // The longest a query may wait for its offsets, and a little more.
            forward_timeout: Duration::from_secs(35),
        }
    }
}

/// Binds the listener (so a bad address fails at once) and returns the server to run.
pub async fn bind(
    supervisor: Supervisor,
    options: Options,
) -> anyhow::Result<(SocketAddr, impl std::future::Future<Output = std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", options.listen))?;
    let address = listener.local_addr()?;
    let refused = supervisor.metrics().http_refused.clone();
    let app = router(supervisor, &options);
    let limits = options.connections;
    Ok((address, async move {
        conn::serve(listener, app, limits, move || {
            refused.inc();
        })
        .await;
        Ok(())
    }))
}

/// The API's routes over `supervisor`, behind the token check.
fn router(supervisor: Supervisor, options: &Options) -> Router {
    // A forward goes where a claim said, and no further: no redirects.
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(options.forward_timeout))
        .timeout_connect(Some(Duration::from_secs(2)))
        .build()
        .into();
    let api = Api(std::sync::Arc::new(ApiState {
        supervisor,
        token: options.token.clone(),
        read_token: options.read_token.clone(),
        heavy: std::sync::Arc::new(tokio::sync::Semaphore::new(options.max_heavy_queries)),
        max_upload: options.max_upload,
        agent,
    }));
    // Without a token every mutating route answers 405 (see `authorize`).
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/pipelines", get(list))
        .route("/v1/pipelines/{name}", get(status).put(deploy).delete(undeploy))
        .route("/v1/pipelines/{name}/{action}", post(act))
        .route("/v1/pipelines/{name}/dlq/replay", post(replay))
        .route("/v1/pipelines/{name}/logs", get(logs::logs))
        .route("/ui", get(ui::root))
        .route("/ui/", get(ui::index))
        .route("/ui/{file}", get(ui::asset))
        .route("/v1/pipelines/{name}/state", get(query::state))
        .route("/v1/pipelines/{name}/state/{key}", get(query::state_key))
        .route("/v1/pipelines/{name}/stages/{stage}/state", get(query::stage_state))
        .route("/v1/pipelines/{name}/stages/{stage}/state/{key}", get(query::stage_state_key))
        .route("/v1/pipelines/{name}/tables/{table}", get(query::table))
        .route("/v1/pipelines/{name}/tables/{table}/{key}", get(query::table_key))
        .route("/v1/pipelines/{name}/instances", get(query::instances))
        .layer(middleware::from_fn_with_state(api.clone(), authorize))
        .with_state(api)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(ApiError { error: message.into() })).into_response()
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = match (self.not_found, self.domain) {
            (true, _) => StatusCode::NOT_FOUND,
            (false, _) if self.conflict => StatusCode::CONFLICT,
            (false, Domain::User) => StatusCode::BAD_REQUEST,
            (false, Domain::External) => StatusCode::SERVICE_UNAVAILABLE,
            (false, Domain::Internal) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error(status, self.message)
    }
}

/// Refuses a mutating request without the right bearer token. The refused request's body is
/// read and dropped first (see [`drain`]), so a client still sending its upload reads the 401.
async fn authorize(State(api): State<Api>, headers: HeaderMap, request: Request, next: Next) -> Response {
    // Only a deploy (PUT) reads its body; any other request's is read and dropped here, before
    // the handler answers. Answered with its body still on the way (a client that sends the
    // headers and the body in two writes), the connection was closed under a keep-alive client.
    let request = if request.method() == Method::PUT {
        request
    } else {
        let (parts, body) = request.into_parts();
        if !body.is_end_stream() {
            drain(body, api.max_upload.saturating_add(DRAIN)).await;
        }
        Request::from_parts(parts, Body::empty())
    };
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        // The probes and the console's files (which hold no data) need no read token.
        let path = request.uri().path();
        let probe = matches!(path, "/healthz" | "/readyz" | "/ui") || path.starts_with("/ui/");
        return match (&api.read_token, probe) {
            (Some(read), false)
                if !bearer_is(&headers, read) && !api.token.as_ref().is_some_and(|t| bearer_is(&headers, t)) =>
            {
                error(StatusCode::UNAUTHORIZED, "reads on this weir need `Authorization: Bearer <read token>`")
            }
            _ => next.run(request).await,
        };
    }
    let refusal = match &api.token {
        None => error(StatusCode::METHOD_NOT_ALLOWED, "this weir serves read-only routes"),
        Some(token) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            match given {
                Some(given) if same_secret(given.trim(), token) => return next.run(request).await,
                Some(_) => error(StatusCode::UNAUTHORIZED, "wrong admin token"),
                None => error(
                    StatusCode::UNAUTHORIZED,
                    "this request needs `Authorization: Bearer <token>` (see admin.token in the data dir)",
                ),
            }
        }
    };
    drain(request.into_body(), api.max_upload.saturating_add(DRAIN)).await;
    refusal
}

/// Whether the request's bearer token is `token`.
fn bearer_is(headers: &HeaderMap, token: &str) -> bool {
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    given.is_some_and(|given| same_secret(given.trim(), token))
}

/// Compares a given secret with the expected one in time that depends on neither: their
/// SHA-256 digests are compared in full (comparing the secrets would end early at a length
/// difference, telling the length).
fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::{Digest as _, Sha256};
    let (a, b) = (Sha256::digest(given.as_bytes()), Sha256::digest(expected.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A permit for a query that leaves the HTTP thread for long (a forward, a range scan), or the
/// 503 that says how many run.
fn heavy_permit(api: &Api) -> Result<tokio::sync::OwnedSemaphorePermit, Box<Response>> {
    api.heavy.clone().try_acquire_owned().map_err(|_| {
        api.supervisor.metrics().queries_shed.inc();
        let mut response = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "as many forwarded queries and range scans run as this weir allows; try again",
        );
        response.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        Box::new(response)
    })
}

/// Runs blocking supervisor work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Response> {
    tokio::task::spawn_blocking(f).await.map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn healthz(State(api): State<Api>) -> Response {
    let dead = api.supervisor.liveness();
    let (code, status) =
        if dead.is_empty() { (StatusCode::OK, "alive") } else { (StatusCode::SERVICE_UNAVAILABLE, "dead") };
    (code, Json(Probe { status: status.to_owned(), pipelines: dead })).into_response()
}

async fn readyz(State(api): State<Api>) -> Response {
    let not_ready = api.supervisor.readiness();
    let (code, status) =
        if not_ready.is_empty() { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready") };
    (code, Json(Probe { status: status.to_owned(), pipelines: not_ready })).into_response()
}

async fn metrics(State(api): State<Api>) -> Response {
    let text = api.supervisor.metrics().encode();
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

async fn list(State(api): State<Api>) -> Response {
    Json(Pipelines { pipelines: api.supervisor.list() }).into_response()
}

async fn status(State(api): State<Api>, Path(name): Path<String>) -> Response {
    match api.supervisor.status(&name) {
        Ok(s) => Json(s).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// How much of an over-long upload is read, and dropped, before the 413: a client that is still
/// sending then reads the answer, where closing on unread bytes would reset the connection
/// under it.
const DRAIN: usize = 64 << 20;

/// Reads and drops a refused request's body, up to `limit` bytes. Answering with bytes unread
/// makes the server close a socket that still holds them, and the kernel then resets the
/// connection: the client, still sending, loses the answer (one refused deploy in 80 did so).
async fn drain(mut body: Body, limit: usize) {
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        seen = seen.saturating_add(frame.data_ref().map_or(0, |d| d.len()));
        if seen > limit {
            break;
        }
    }
}

/// A request body of at most `limit` bytes, or the 413.
async fn upload(headers: &HeaderMap, mut body: Body, limit: usize) -> Result<Vec<u8>, Response> {
    let too_long = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is longer than {limit} bytes (weir serve --max-upload-mib)"),
        )
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit.saturating_add(DRAIN)) {
        return Err(too_long());
    }
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| error(StatusCode::BAD_REQUEST, format!("reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        if kept.len() + data.len() > limit {
            drain(body, DRAIN).await;
            return Err(too_long());
        }
        kept.extend_from_slice(&data);
    }
    Ok(kept)
}

async fn deploy(State(api): State<Api>, Path(name): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let body = match upload(&headers, body, api.max_upload).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let body: DeployRequest = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be {{\"pipeline\": \"<file text>\", \"module\": {{\"name\", \"base64\"}}}}: {e}"
                ),
            )
        }
    };
    let decode = |what: &str, m: ModuleUpload| {
        let bytes = base64::engine::general_purpose::STANDARD.decode(m.base64.as_bytes());
        bytes.map(|bytes| Upload { file_name: m.name, bytes }).map_err(|e| format!("{what}.base64 is not base64: {e}"))
    };
    let mut uploads = Uploads::default();
    if let Some(m) = body.module {
        match decode("module", m) {
            Ok(upload) => uploads.module = Some(upload),
            Err(why) => return error(StatusCode::BAD_REQUEST, why),
        }
    }
    for (stage, m) in body.stages {
        match decode(&format!("stages.{stage}"), m) {
            Ok(upload) => uploads.stages.insert(stage, upload),
            Err(why) => return error(StatusCode::BAD_REQUEST, why),
        };
    }
    let supervisor = api.supervisor.clone();
    match blocking(move || supervisor.deploy(&name, &body.pipeline, uploads)).await {
        Ok(Ok(deployed)) => Json(deployed).into_response(),
        Ok(Err(refusal)) => refusal.into_response(),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct UndeployQuery {
    #[serde(default)]
    purge: bool,
}

async fn undeploy(State(api): State<Api>, Path(name): Path<String>, Query(q): Query<UndeployQuery>) -> Response {
    let supervisor = api.supervisor.clone();
    match blocking(move || supervisor.undeploy(&name, q.purge).map(|()| name)).await {
        Ok(Ok(name)) => Json(Undeployed { name, undeployed: true, purged: q.purge }).into_response(),
        Ok(Err(refusal)) => refusal.into_response(),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayQuery {
    from: Option<i64>,
    until: Option<i64>,
}

async fn replay(
    State(api): State<Api>,
    Path(name): Path<String>,
    query: Result<Query<ReplayQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else { return error(StatusCode::BAD_REQUEST, "from and until are offsets") };
    let supervisor = api.supervisor.clone();
    match blocking(move || supervisor.replay_dead_letters(&name, q.from, q.until).map(|n| (name, n))).await {
        Ok(Ok((name, replayed))) => Json(Replayed { name, replayed }).into_response(),
        Ok(Err(refusal)) => refusal.into_response(),
        Err(response) => response,
    }
}

async fn act(State(api): State<Api>, Path((name, action)): Path<(String, String)>) -> Response {
    let action: PipelineAction = match action.parse() {
        Ok(action) => action,
        Err(message) => return Refusal { message, ..Refusal::not_found(&name) }.into_response(),
    };
    let supervisor = api.supervisor.clone();
    let result = blocking(move || match action {
        PipelineAction::Pause => {
            supervisor.set_paused(&name, true).map(|()| Json(Paused { name, paused: true }).into_response())
        }
        PipelineAction::Resume => {
            supervisor.set_paused(&name, false).map(|()| Json(Paused { name, paused: false }).into_response())
        }
        PipelineAction::Rollback => supervisor.rollback(&name).map(|d| Json(d).into_response()),
    })
    .await;
    match result {
        Ok(Ok(answer)) => answer,
        Ok(Err(refusal)) => refusal.into_response(),
        Err(response) => response,
    }
}

#[cfg(test)]
mod test {
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;
    use crate::engine::{Engine, EngineOptions};
    use crate::metrics::Metrics;

    const TOKEN: &str = "an-admin-token-of-some-length";
    const READ: &str = "a-read-token-of-some-length";

    fn app(token: Option<&str>, read_token: Option<&str>) -> Router {
        let engine = Engine::new(EngineOptions::default()).expect("an engine with the default options");
        let options = Options {
            token: token.map(str::to_owned),
            read_token: read_token.map(str::to_owned),
            ..Options::default()
        };
        router(Supervisor::new(engine, Metrics::new(), None), &options)
    }

    async fn call(app: &Router, method: Method, uri: &str, bearer: Option<&str>) -> (StatusCode, serde_json::Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn a_mutating_request_without_the_admin_token_is_refused_401_and_changes_nothing() {
        let app = app(Some(TOKEN), None);
        for bearer in [None, Some("not-the-admin-token-at-all")] {
            let (status, body) = call(&app, Method::POST, "/v1/pipelines/p/pause", bearer).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
            assert!(body["error"].as_str().is_some_and(|e| e.contains("token")), "{body}");
        }
        let (status, _) = call(&app, Method::DELETE, "/v1/pipelines/p", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // With the token the request reaches the supervisor, which knows no such pipeline.
        let (status, body) = call(&app, Method::POST, "/v1/pipelines/p/pause", Some(TOKEN)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"], "no pipeline named `p`");
    }

    #[tokio::test]
    async fn without_an_admin_token_only_reads_are_served() {
        let app = app(None, None);
        let (status, _) = call(&app, Method::POST, "/v1/pipelines/p/resume", Some(TOKEN)).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let (status, body) = call(&app, Method::GET, "/v1/pipelines", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["pipelines"], serde_json::json!([]));
    }

    #[tokio::test]
    async fn a_read_token_guards_reads_but_not_the_probes() {
        let app = app(Some(TOKEN), Some(READ));
        let (status, _) = call(&app, Method::GET, "/v1/pipelines", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        for bearer in [READ, TOKEN] {
            let (status, _) = call(&app, Method::GET, "/v1/pipelines", Some(bearer)).await;
            assert_eq!(status, StatusCode::OK, "with {bearer}");
        }
        for probe in ["/healthz", "/readyz"] {
            let (status, _) = call(&app, Method::GET, probe, None).await;
            assert_eq!(status, StatusCode::OK, "{probe}");
        }
    }

    #[test]
    fn a_refusal_is_answered_with_the_status_of_whose_fault_it_is() {
        let refusal = |domain, not_found, conflict| {
            let message = String::from("why");
            Refusal { domain, not_found, conflict, message }.into_response().status()
        };
        assert_eq!(refusal(Domain::User, false, false), StatusCode::BAD_REQUEST);
        assert_eq!(refusal(Domain::User, true, false), StatusCode::NOT_FOUND);
        assert_eq!(refusal(Domain::User, false, true), StatusCode::CONFLICT);
        assert_eq!(refusal(Domain::External, false, false), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refusal(Domain::Internal, false, false), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
