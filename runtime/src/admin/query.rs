//! The query routes: a pipeline's state and tables, read by the application beside weir.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/pipelines/{name}/state/{key}` (or `/state?key_base64=`) | the value under a key, from the partition the key hashes to (or `?partition=N`) |
//! | `GET /v1/pipelines/{name}/state?prefix=P` or `?from=A&to=B` | entries in key order across every partition, `limit` at a time, with a `next` cursor |
//! | `GET /v1/pipelines/{name}/tables/{table}/{key}` | a table's value |
//! | `GET /v1/pipelines/{name}/instances` | which instance owns which partition |
//!
//! `allow_standby=true` lets a key of a partition another instance owns be answered from a
//! standby replica kept here (`"standby": true`, with the changelog offset it reflects).
//!
//! `min_offset=TOPIC:PARTITION:OFFSET` (comma-separated for several) waits up to `timeout_ms`
//! until the input at that offset is committed (504 if it is not). A key another instance owns
//! is forwarded to it; `weir-instance` names the instance that answered. While nobody can
//! answer for a partition (a rebalance, a restore, an instance gone) the answer is 503 with
//! `Retry-After`, never a stale value.

use std::time::{Duration, Instant};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{error, heavy_permit, Api};
use crate::query::{self, Member, Owner, Page, Point, Queryable, Range, MAX_LIMIT};

/// The header a forwarded query carries (so it is never forwarded again) and every answer
/// names its instance with.
const FORWARDED: &str = "weir-forwarded";
/// What a forwarded query carries to prove it comes from an instance of the application: the
/// MAC of the sender and the path (see [`crate::query::claims`]).
const PROOF: &str = "weir-proof";
const INSTANCE: &str = "weir-instance";
/// Longest `timeout_ms` a query may wait for `min_offset`.
const MAX_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_LIMIT: usize = 100;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Params {
    key_base64: Option<String>,
    partition: Option<i32>,
    prefix: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    min_offset: Option<String>,
    timeout_ms: Option<u64>,
    /// Set by the instance that gathers a range: the partitions this one is to read.
    partitions: Option<String>,
    /// Answer from a standby replica kept here when this instance does not own the key's
    /// partition (a stale store, as Kafka Streams' stale stores).
    allow_standby: Option<bool>,
}

/// An input offset a query waits for.
struct MinOffset {
    topic: String,
    partition: i32,
    offset: i64,
}

/// A refusal, as a response.
type Refused = Box<Response>;

fn bad(message: impl Into<String>) -> Refused {
    Box::new(error(StatusCode::BAD_REQUEST, message))
}

fn not_found(message: impl Into<String>) -> Refused {
    Box::new(error(StatusCode::NOT_FOUND, message))
}

/// 503 with `Retry-After`: nobody can answer for the data now, try again shortly.
fn unavailable(message: impl Into<String>) -> Refused {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message);
    response.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
    Box::new(response)
}

fn done(result: Result<Response, Refused>) -> Response {
    result.unwrap_or_else(|r| *r)
}

fn params(query: Result<Query<Params>, QueryRejection>) -> Result<Params, Refused> {
    query.map(|Query(p)| p).map_err(|e| bad(format!("bad query parameters: {}", e.body_text())))
}

fn decode64(what: &str, text: &str) -> Result<Vec<u8>, Refused> {
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .map_err(|e| bad(format!("{what} is not base64: {e}")))
}

/// The pipeline's queryable part, refusing pipelines that keep no state.
fn stateful(api: &Api, name: &str) -> Result<std::sync::Arc<Queryable>, Refused> {
    let q = api.supervisor.queryable(name).map_err(|r| Box::new(r.into_response()))?;
    if !q.keeps_state() {
        return Err(not_found(format!(
            "pipeline `{name}` keeps no state (its module does not import weir:processor/state)"
        )));
    }
    Ok(q)
}

/// The inputs' partition count, once the pipeline knows it.
fn partitions(q: &Queryable, name: &str) -> Result<i32, Refused> {
    q.partitions().ok_or_else(|| unavailable(format!("pipeline `{name}` has not been assigned partitions yet")))
}

fn min_offsets(params: &Params, partitions: i32) -> Result<Vec<MinOffset>, Refused> {
    let Some(text) = &params.min_offset else { return Ok(Vec::new()) };
    text.split(',')
        .map(|one| {
            let mut parts = one.rsplitn(3, ':');
            let (offset, partition, topic) = (parts.next(), parts.next(), parts.next());
            let parsed = match (topic, partition.map(str::parse::<i32>), offset.map(str::parse::<i64>)) {
                (Some(topic), Some(Ok(partition)), Some(Ok(offset))) if !topic.is_empty() && offset >= 0 => {
                    MinOffset { topic: topic.to_owned(), partition, offset }
                }
                _ => return Err(bad(format!("min_offset `{one}` is not TOPIC:PARTITION:OFFSET"))),
            };
            if !(0..partitions).contains(&parsed.partition) {
                return Err(bad(format!("min_offset `{one}`: the inputs have partitions 0 to {}", partitions - 1)));
            }
            Ok(parsed)
        })
        .collect()
}

/// Waits until every offset in `wanted` that this instance reads is committed here.
async fn wait_for(q: &Queryable, wanted: &[MinOffset], params: &Params) -> Result<(), Refused> {
    if wanted.is_empty() {
        return Ok(());
    }
    let timeout = Duration::from_millis(params.timeout_ms.unwrap_or(5_000)).min(MAX_WAIT);
    let deadline = Instant::now() + timeout;
    let mut changes = q.subscribe();
    loop {
        changes.borrow_and_update();
        let mut missing = None;
        for w in wanted {
            if q.owner(w.partition) != Owner::Here {
                return Err(unavailable(format!("partition {} moved while the query waited", w.partition)));
            }
            if q.position(&w.topic, w.partition).is_none_or(|next| next <= w.offset) {
                missing = Some(w);
            }
        }
        let Some(w) = missing else { return Ok(()) };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || tokio::time::timeout(left, changes.changed()).await.is_err() {
            let at =
                q.position(&w.topic, w.partition).map_or("nothing yet".into(), |n| format!("up to offset {}", n - 1));
            return Err(Box::new(error(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "`{}` partition {} offset {} was not committed within {} ms (committed: {at})",
                    w.topic,
                    w.partition,
                    w.offset,
                    timeout.as_millis()
                ),
            )));
        }
    }
}

/// Bytes as JSON when they are JSON, else `{"base64": ...}`.
fn value_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| json!({ "base64": STANDARD.encode(bytes) }))
}

/// A key as the answer shows it: `key` when it is UTF-8, else `key_base64`.
fn key_fields(key: &[u8], into: &mut serde_json::Map<String, Value>) {
    match std::str::from_utf8(key) {
        Ok(text) => into.insert("key".into(), json!(text)),
        Err(_) => into.insert("key_base64".into(), json!(STANDARD.encode(key))),
    };
}

fn positions_json(point: &Point) -> Value {
    let list: Vec<Value> = point
        .positions
        .iter()
        .map(|((topic, partition), next)| json!({ "topic": topic, "partition": partition, "offset": next }))
        .collect();
    json!(list)
}

/// Adds the answering instance's header.
fn answered_by(q: &Queryable, mut response: Response) -> Response {
    if let Some(value) = q.instance().and_then(|i| HeaderValue::from_str(&i).ok()) {
        response.headers_mut().insert(INSTANCE, value);
    }
    response
}

pub(super) async fn state_key(
    State(api): State<Api>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let Path((name, key)) = path.map_err(|e| bad(format!("bad key in the path: {}", e.body_text())))?;
        key_in_path(&api, &name, key, query, &uri, &headers).await
    };
    done(result.await)
}

/// A key given in the path (and not as `key_base64` too).
async fn key_in_path(
    api: &Api,
    name: &str,
    key: String,
    query: Result<Query<Params>, QueryRejection>,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<Response, Refused> {
    let params = params(query)?;
    if params.key_base64.is_some() {
        return Err(bad("give the key in the path or as key_base64, not both"));
    }
    point(api, name, key.into_bytes(), &params, uri, headers).await
}

pub(super) async fn state(
    State(api): State<Api>,
    Path(name): Path<String>,
    query: Result<Query<Params>, QueryRejection>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let params = params(query)?;
        match &params.key_base64 {
            Some(key) => {
                let key = decode64("key_base64", key)?;
                point(&api, &name, key, &params, &uri, &headers).await
            }
            None => range(&api, &name, &params, &uri, &headers).await,
        }
    };
    done(result.await)
}

/// Refuses a stage other than the one whose state queries read.
fn the_query_stage(api: &Api, name: &str, stage: &str) -> Result<(), Refused> {
    let q = stateful(api, name)?;
    match q.stage() {
        Some(queried) if queried == stage => Ok(()),
        Some(queried) => Err(not_found(format!(
            "queries of pipeline `{name}` read stage `{queried}`, its last stage that keeps state; the state of \
             stage `{stage}` is not queryable"
        ))),
        None => Err(not_found(format!("pipeline `{name}` keeps no state"))),
    }
}

/// `/stages/{stage}/state/{key}`: as `/state/{key}`, for the stage named.
pub(super) async fn stage_state_key(
    State(api): State<Api>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let Path((name, stage, key)) = path.map_err(|e| bad(format!("bad key in the path: {}", e.body_text())))?;
        the_query_stage(&api, &name, &stage)?;
        key_in_path(&api, &name, key, query, &uri, &headers).await
    };
    done(result.await)
}

/// `/stages/{stage}/state`: as `/state`, for the stage named.
pub(super) async fn stage_state(
    State(api): State<Api>,
    Path((name, stage)): Path<(String, String)>,
    query: Result<Query<Params>, QueryRejection>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = the_query_stage(&api, &name, &stage) {
        return *refused;
    }
    state(State(api), Path(name), query, uri, headers).await
}

/// One key: read here, or forwarded to its owner.
async fn point(
    api: &Api,
    name: &str,
    key: Vec<u8>,
    params: &Params,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<Response, Refused> {
    let q = stateful(api, name)?;
    let forwarded = forwarded(&q, headers, uri)?;
    if key.is_empty() {
        return Err(bad("the key is empty"));
    }
    let n = partitions(&q, name)?;
    let partition = params.partition.unwrap_or_else(|| query::partition_for(&key, n));
    if !(0..n).contains(&partition) {
        return Err(bad(format!("partition {partition}: the inputs have partitions 0 to {}", n - 1)));
    }
    let wanted = min_offsets(params, n)?;
    if let Some(w) = wanted.iter().find(|w| w.partition != partition) {
        return Err(bad(format!(
            "min_offset names partition {} but the key is read from partition {partition}",
            w.partition
        )));
    }
    let owner = q.owner(partition);
    if params.allow_standby == Some(true) && owner != Owner::Here {
        if !wanted.is_empty() {
            return Err(bad("min_offset waits for input offsets, which a standby does not follow; leave one out"));
        }
        if let Some(answer) = from_standby(&q, name, partition, &key)? {
            return Ok(answer);
        }
    }
    match owner {
        Owner::Here => {}
        Owner::There(member) if !forwarded => {
            let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
            return forward(api, &q, &member, path).await;
        }
        Owner::There(member) => {
            return Err(unavailable(format!(
                "partition {partition} is not open here; the membership topic says {} has it",
                member.instance
            )))
        }
        Owner::Unavailable(why) => return Err(unavailable(why)),
    }
    wait_for(&q, &wanted, params).await?;
    let point = q
        .get(partition, &key)
        .map_err(|e| Box::new(error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())))?
        .ok_or_else(|| unavailable(format!("partition {partition} moved while it was read")))?;
    let mut body = serde_json::Map::new();
    key_fields(&key, &mut body);
    body.insert("partition".into(), json!(partition));
    body.insert("position".into(), positions_json(&point));
    Ok(with_value(&q, body, point.value.as_deref(), || format!("no value under this key in pipeline `{name}`")))
}

/// A point answer: `body` with the value (200), or with why there is none (404).
fn with_value(
    q: &Queryable,
    mut body: serde_json::Map<String, Value>,
    value: Option<&[u8]>,
    missing: impl FnOnce() -> String,
) -> Response {
    let status = match value {
        Some(value) => {
            body.insert("value".into(), value_json(value));
            StatusCode::OK
        }
        None => {
            body.insert("error".into(), json!(missing()));
            StatusCode::NOT_FOUND
        }
    };
    answered_by(q, (status, Json(Value::Object(body))).into_response())
}

/// The value under `key` in the standby store of `partition` kept here, if one is: the answer
/// says it came from a standby and gives the changelog offset the store reflects.
fn from_standby(q: &Queryable, name: &str, partition: i32, key: &[u8]) -> Result<Option<Response>, Refused> {
    let read =
        q.get_standby(partition, key).map_err(|e| Box::new(error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())))?;
    let Some(query::StandbyPoint { value, changelog_offset: checkpoint }) = read else { return Ok(None) };
    let mut body = serde_json::Map::new();
    key_fields(key, &mut body);
    body.insert("partition".into(), json!(partition));
    body.insert("standby".into(), json!(true));
    body.insert("changelog_offset".into(), json!(checkpoint));
    let missing = || format!("no value under this key in pipeline `{name}`'s standby");
    Ok(Some(with_value(q, body, value.as_deref(), missing)))
}

/// Sends a query on to the instance that owns its data, and hands its answer back.
async fn forward(api: &Api, q: &Queryable, member: &Member, path: &str) -> Result<Response, Refused> {
    let _permit = heavy_permit(api)?;
    let url = format!("{}{path}", member.url.trim_end_matches('/'));
    let (agent, me) = (api.agent.clone(), q.instance().unwrap_or_default());
    let instance = member.instance.clone();
    // Instances of one application share their read token, when reads need one.
    let auth = api.read_token.as_ref().map(|t| format!("Bearer {t}"));
    let key = q.claim_key().ok_or_else(|| unavailable("this instance has not joined the membership topic yet"))?;
    let proof = key.sign(&[b"forward", me.as_bytes(), path.as_bytes()]);
    let answer = tokio::task::spawn_blocking(move || {
        let mut request = agent.get(&url).header(FORWARDED, &me).header(PROOF, &proof);
        if let Some(auth) = &auth {
            request = request.header("authorization", auth);
        }
        let mut response = request.call()?;
        let status = response.status().as_u16();
        let by = response.headers().get(INSTANCE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = response.body_mut().read_to_vec()?;
        Ok::<_, ureq::Error>((status, by, body))
    })
    .await
    .map_err(|e| Box::new(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())))?;
    let (status, by, body) =
        answer.map_err(|e| unavailable(format!("instance {instance} at {} did not answer: {e}", member.url)))?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(value) = by.and_then(|b| HeaderValue::from_str(&b).ok()) {
        response.headers_mut().insert(INSTANCE, value);
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
    }
    Ok(response)
}

/// Whether the query was forwarded by another instance of the application (so it is answered
/// here and never forwarded again); a query that says so without a proof that verifies is
/// refused.
fn forwarded(q: &Queryable, headers: &HeaderMap, uri: &axum::http::Uri) -> Result<bool, Refused> {
    let Some(from) = headers.get(FORWARDED) else { return Ok(false) };
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let proof = headers.get(PROOF).map(HeaderValue::as_bytes).unwrap_or_default();
    match q.claim_key() {
        Some(key) if key.verify(&[b"forward", from.as_bytes(), path.as_bytes()], proof) => Ok(true),
        _ => Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "a query marked as forwarded must carry the proof of an instance of this application",
        ))),
    }
}

/// What a range query reads, from its parameters.
fn range_of(params: &Params) -> Result<Range, Refused> {
    let mut range = match (&params.prefix, &params.from, &params.to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => return Err(bad("give prefix, or from and to, not both")),
        (Some(prefix), None, None) => Range::prefix(prefix.as_bytes()),
        (None, from, to) => Range {
            from: from.as_deref().unwrap_or_default().as_bytes().to_vec(),
            to: to.as_ref().map(|t| t.as_bytes().to_vec()),
            after: None,
        },
    };
    if let Some(cursor) = &params.cursor {
        range.after = Some(decode64("cursor", cursor)?);
    }
    Ok(range)
}

fn entry_json(partition: i32, key: &[u8], value: &[u8]) -> Value {
    let mut entry = serde_json::Map::new();
    key_fields(key, &mut entry);
    entry.insert("partition".into(), json!(partition));
    entry.insert("value".into(), value_json(value));
    Value::Object(entry)
}

/// An entry an owner returned, back to (partition, key, value).
fn entry_from(entry: &Value) -> Option<(i32, Vec<u8>, Value)> {
    let key = match (entry.get("key").and_then(Value::as_str), entry.get("key_base64").and_then(Value::as_str)) {
        (Some(k), _) => k.as_bytes().to_vec(),
        (None, Some(b)) => STANDARD.decode(b).ok()?,
        _ => return None,
    };
    Some((entry.get("partition")?.as_i64()? as i32, key, entry.get("value")?.clone()))
}

/// Entries in key order across every partition: read here where this instance owns them,
/// gathered from the owners elsewhere.
async fn range(
    api: &Api,
    name: &str,
    params: &Params,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<Response, Refused> {
    let q = stateful(api, name)?;
    let n = partitions(&q, name)?;
    let range = range_of(params)?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(bad(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let wanted = min_offsets(params, n)?;
    let forwarded = forwarded(&q, headers, uri)?;
    let asked: Vec<i32> = match (&params.partitions, forwarded) {
        (Some(list), _) => list
            .split(',')
            .map(|p| p.parse::<i32>().ok().filter(|p| (0..n).contains(p)))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(format!("partitions must be a list of 0 to {}", n - 1)))?,
        (None, _) => (0..n).collect(),
    };
    // Who reads which of the asked partitions.
    let mut here = Vec::new();
    let mut elsewhere: Vec<(Member, Vec<i32>)> = Vec::new();
    for partition in asked {
        match q.owner(partition) {
            Owner::Here => here.push(partition),
            Owner::There(member) if !forwarded => {
                match elsewhere.iter_mut().find(|(m, _)| m.instance == member.instance) {
                    Some((_, list)) => list.push(partition),
                    None => elsewhere.push((member, vec![partition])),
                }
            }
            Owner::There(_) => return Err(unavailable(format!("partition {partition} is not open here"))),
            Owner::Unavailable(why) => return Err(unavailable(why)),
        }
    }
    let local_wanted: Vec<MinOffset> = wanted.into_iter().filter(|w| here.contains(&w.partition)).collect();
    wait_for(&q, &local_wanted, params).await?;
    // A scan waits for the stores' queued commits, so it runs off the HTTP thread.
    let scanned = {
        // Held until the scan is done (the await below is inside this block).
        let _permit = heavy_permit(api)?;
        let (q, range, here) = (q.clone(), range.clone(), here.clone());
        tokio::task::spawn_blocking(move || q.scan(&range, limit, Some(&here)))
            .await
            .map_err(|e| Box::new(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())))?
    };
    let (page, read): (Page, Vec<i32>) =
        scanned.map_err(|e| Box::new(error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())))?;
    if read.len() != here.len() {
        return Err(unavailable("partitions moved while they were read"));
    }
    let mut entries: Vec<(i32, Vec<u8>, Value)> = page.into_iter().map(|(p, (k, v))| (p, k, value_json(&v))).collect();
    let kept: Vec<&str> =
        uri.query().unwrap_or_default().split('&').filter(|p| !p.starts_with("partitions=")).collect();
    for (member, partitions) in &elsewhere {
        let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
        let mut query = kept.iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("&");
        if !query.is_empty() {
            query.push('&');
        }
        let path = format!("{}?{query}partitions={}", uri.path(), list.join(","));
        let answer = forward(api, &q, member, &path).await?;
        if answer.status() != StatusCode::OK {
            return Ok(answer);
        }
        let body = axum::body::to_bytes(answer.into_body(), 64 << 20)
            .await
            .map_err(|e| unavailable(format!("instance {} answered badly: {e}", member.instance)))?;
        let body: Value = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("instance {} answered with bad JSON: {e}", member.instance)))?;
        let got = body.get("entries").and_then(Value::as_array).cloned().unwrap_or_default();
        entries.extend(got.iter().filter_map(entry_from));
    }
    entries.sort_by(|a, b| a.1.cmp(&b.1));
    entries.truncate(limit);
    let next = (entries.len() == limit).then(|| entries.last().map(|(_, k, _)| URL_SAFE_NO_PAD.encode(k))).flatten();
    let list: Vec<Value> = entries
        .into_iter()
        .map(|(p, k, v)| {
            let mut entry = entry_json(p, &k, b"null");
            entry["value"] = v;
            entry
        })
        .collect();
    Ok(answered_by(&q, Json(json!({ "entries": list, "next": next, "partitions": n })).into_response()))
}

pub(super) async fn table_key(
    State(api): State<Api>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
) -> Response {
    let result = async {
        let Path((name, table, key)) = path.map_err(|e| bad(format!("bad key in the path: {}", e.body_text())))?;
        params(query)?;
        table_value(&api, &name, &table, key.into_bytes())
    };
    done(result.await)
}

pub(super) async fn table(
    State(api): State<Api>,
    Path((name, table)): Path<(String, String)>,
    query: Result<Query<Params>, QueryRejection>,
) -> Response {
    let result = async {
        let params = params(query)?;
        let key = params.key_base64.as_deref().ok_or_else(|| bad("give the key in the path or as key_base64"))?;
        table_value(&api, &name, &table, decode64("key_base64", key)?)
    };
    done(result.await)
}

/// A table's value: every instance reads every partition of its tables, so this is local.
fn table_value(api: &Api, name: &str, table: &str, key: Vec<u8>) -> Result<Response, Refused> {
    let q = api.supervisor.queryable(name).map_err(|r| Box::new(r.into_response()))?;
    if key.is_empty() {
        return Err(bad("the key is empty"));
    }
    let tables = q.tables().ok_or_else(|| unavailable(format!("pipeline `{name}` has not started yet")))?;
    let n = partitions(&q, name)?;
    let partition = query::partition_for(&key, n);
    let value = tables.get(table, partition, &key).map_err(not_found)?;
    let mut body = serde_json::Map::new();
    body.insert("table".into(), json!(table));
    key_fields(&key, &mut body);
    let status = match value {
        Some(value) => {
            body.insert("value".into(), value_json(&value));
            StatusCode::OK
        }
        None => {
            body.insert("error".into(), json!(format!("no value under this key in table `{table}`")));
            StatusCode::NOT_FOUND
        }
    };
    Ok(answered_by(&q, (status, Json(Value::Object(body))).into_response()))
}

pub(super) async fn instances(State(api): State<Api>, Path(name): Path<String>) -> Response {
    let q = match api.supervisor.queryable(&name) {
        Ok(q) => q,
        Err(refusal) => return refusal.into_response(),
    };
    let body = json!({
        "instance": q.instance(),
        "partitions": q.partitions(),
        "owned": q.owned(),
        "members": q.members(),
    });
    answered_by(&q, Json(body).into_response())
}
