//! `GET /v1/pipelines/{name}/logs`: what a pipeline's guests logged and printed, newest last.
//!
//! - `?level=warn` (default `trace`): that level and worse; `?limit=N` (default 100, at most
//!   [`guest_log::KEPT`]): the newest N; `?after=SEQ`: only lines after that one.
//! - `?follow=true`: server-sent events (`text/event-stream`), one `data:` line of JSON per log
//!   line with its `seq` as the event id, first the newest `limit`, then each as it comes; a
//!   comment every 15 s keeps the connection open. A reconnecting `EventSource` sends
//!   `Last-Event-ID` and gets what it missed, while the ring still holds it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{error, Api};
use crate::api::GuestLogPage;
use crate::guest_log::{self, GuestLog, Level};

/// How often a following stream sends a comment when nothing is logged.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
pub(super) struct Params {
    level: Option<Level>,
    limit: Option<usize>,
    after: Option<u64>,
    #[serde(default)]
    follow: bool,
}

pub(super) async fn logs(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let log = match api.supervisor.guest_log(&name) {
        Ok(log) => log,
        Err(refusal) => return refusal.into_response(),
    };
    let limit = params.limit.unwrap_or(100);
    if limit == 0 || limit > guest_log::KEPT {
        return error(StatusCode::BAD_REQUEST, format!("limit must be 1 to {}", guest_log::KEPT));
    }
    let level = params.level.unwrap_or(Level::Trace);
    let resumed = headers.get("last-event-id").and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    let after = resumed.or(params.after).unwrap_or(0);
    if !params.follow {
        let lines = log.read(after, level, limit);
        let next = lines.last().map_or(after, |l| l.seq);
        return Json(GuestLogPage { lines, dropped: log.dropped(), next }).into_response();
    }
    let first = log.read(after, level, limit);
    let stream = futures_util::stream::unfold(Follow { log, level, after, first: Some(first) }, next_events);
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    response
}

/// Where a following stream stands.
struct Follow {
    log: Arc<GuestLog>,
    level: Level,
    /// The last line sent.
    after: u64,
    /// What to send first.
    first: Option<Vec<guest_log::LogLine>>,
}

/// The next events of a following stream: lines logged since the last sent, or a comment when
/// none came for [`KEEP_ALIVE`].
async fn next_events(mut follow: Follow) -> Option<(Result<String, Infallible>, Follow)> {
    let mut changed = follow.log.subscribe();
    loop {
        let lines = match follow.first.take() {
            Some(first) => first,
            None => follow.log.read(follow.after, follow.level, guest_log::KEPT),
        };
        if let Some(last) = lines.last() {
            follow.after = last.seq;
            let mut events = String::new();
            for line in &lines {
                let data = serde_json::to_string(line).unwrap_or_default();
                events.push_str(&format!("id: {}\ndata: {data}\n\n", line.seq));
            }
            return Some((Ok(events), follow));
        }
        match tokio::time::timeout(KEEP_ALIVE, changed.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return None,
            Err(_) => return Some((Ok(": still here\n\n".to_owned()), follow)),
        }
    }
}
