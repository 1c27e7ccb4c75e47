//! The HTTP API: routes, auth, validation, uploads, results, events, metrics.
//! Every error is JSON: `{"error": "...", "field": "..." | null}`.

use crate::db::{now, Dataset, Job, JobParams, Model};
use crate::jobs::{blob_path, job_dir, Runner};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

/// The OpenAPI 3 document, kept next to the routes.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Largest JSON request body.
pub const MAX_JSON_BYTES: usize = 64 * 1024;
/// Largest text field in a multipart upload.
const MAX_TEXT_FIELD: usize = 4096;
/// An upload stalls for at most this long between chunks.
const UPLOAD_IDLE: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct AppState {
    pub runner: Arc<Runner>,
    pub data_dir: PathBuf,
    pub max_upload_bytes: u64,
    pub request_timeout: Duration,
    pub shutdown: watch::Receiver<bool>,
}

#[derive(Clone, Copy)]
pub struct Tenant(pub i64);

pub struct ApiError {
    status: StatusCode,
    error: String,
    field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>, field: Option<&str>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            field: field.map(str::to_string),
        }
    }
    fn bad(error: impl Into<String>, field: &str) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error, Some(field))
    }
    fn invalid(error: impl Into<String>, field: &str) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error, Some(field))
    }
    fn not_found(what: &str, field: Option<&str>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found"), field)
    }
    fn too_large(limit: u64) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than the limit of {limit} bytes"),
            Some("body"),
        )
    }
    fn internal(e: impl std::fmt::Display) -> ApiError {
        eprintln!("nshap serve: internal error: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
            None,
        )
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        ApiError::internal(format!("{e:#}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "field": self.field});
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

type ApiResult<T> = Result<T, ApiError>;

pub fn router(state: AppState) -> Router {
    let timeout = state.request_timeout;
    let timed = Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/jobs", post(create_job).get(list_jobs))
        .route("/v1/jobs/{id}", get(get_job).delete(cancel_job))
        .route("/v1/jobs/{id}/values.csv", get(values_csv))
        .route("/v1/jobs/{id}/report.json", get(report_json))
        .route("/v1/jobs/{id}/ablation.svg", get(ablation_svg))
        .route("/v1/models/{id}", get(get_model))
        .route("/v1/datasets/{id}", get(get_dataset))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            request_timeout(timeout, req, next)
        }));
    // Uploads are bounded by size and by an idle timeout per chunk; events stream for long.
    let untimed = Router::new()
        .route("/v1/models", post(upload_model))
        .route("/v1/datasets", post(upload_dataset))
        .route("/v1/jobs/{id}/events", get(job_events))
        .layer(DefaultBodyLimit::disable());
    let authed = timed
        .merge(untimed)
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(authed)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route", None) })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
                None,
            )
        })
        .with_state(state)
}

async fn request_timeout(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("request took longer than {} s", limit.as_secs_f64()),
            None,
        )
        .into_response(),
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn authenticate(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing bearer token: send Authorization: Bearer <token>",
            Some("authorization"),
        )
        .into_response();
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "malformed Authorization header: expected Bearer <token>",
            Some("authorization"),
        )
        .into_response();
    };
    match s.runner.db.tenant_for_token(&sha256_hex(token.as_bytes())) {
        Ok(Some(t)) => {
            req.extensions_mut().insert(Tenant(t));
            next.run(req).await
        }
        Ok(None) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid token",
            Some("authorization"),
        )
        .into_response(),
        Err(e) => ApiError::internal(format!("{e:#}")).into_response(),
    }
}

async fn healthz(State(s): State<AppState>) -> Response {
    let status = if s.runner.is_shutting_down() {
        "shutting_down"
    } else {
        "ok"
    };
    axum::Json(json!({"status": status})).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

// ---------------------------------------------------------------------------------------------
// Uploads

/// A file being written under tmp/; removed unless it was moved into blobs/.
struct Staged {
    path: PathBuf,
    kept: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

struct Upload<'a> {
    s: &'a AppState,
    total: u64,
}

enum Part {
    Text(String),
    Blob { digest: String, bytes: u64 },
}

impl Upload<'_> {
    async fn next_chunk(
        field: &mut axum::extract::multipart::Field<'_>,
    ) -> ApiResult<Option<Bytes>> {
        match tokio::time::timeout(UPLOAD_IDLE, field.chunk()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(ApiError::bad(
                format!("malformed multipart body: {e}"),
                "body",
            )),
            Err(_) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "upload stalled",
                Some("body"),
            )),
        }
    }

    fn count(&mut self, n: usize) -> ApiResult<()> {
        self.total += n as u64;
        if self.total > self.s.max_upload_bytes {
            return Err(ApiError::too_large(self.s.max_upload_bytes));
        }
        Ok(())
    }

    async fn text(
        &mut self,
        field: &mut axum::extract::multipart::Field<'_>,
        name: &str,
    ) -> ApiResult<String> {
        let mut buf = Vec::new();
        while let Some(c) = Self::next_chunk(field).await? {
            self.count(c.len())?;
            buf.extend_from_slice(&c);
            if buf.len() > MAX_TEXT_FIELD {
                return Err(ApiError::invalid(
                    format!("{name}: longer than {MAX_TEXT_FIELD} bytes"),
                    name,
                ));
            }
        }
        String::from_utf8(buf)
            .map(|t| t.trim().to_string())
            .map_err(|_| ApiError::invalid(format!("{name}: not UTF-8 text"), name))
    }

    /// Stream a file part to tmp/, hashing it, then move it to blobs/<sha256>.
    async fn blob(
        &mut self,
        field: &mut axum::extract::multipart::Field<'_>,
        name: &str,
    ) -> ApiResult<Part> {
        let tmp = self
            .s
            .data_dir
            .join("tmp")
            .join(format!("{}.part", random_hex(16)));
        let mut staged = Staged {
            path: tmp.clone(),
            kept: false,
        };
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(ApiError::internal)?;
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        while let Some(c) = Self::next_chunk(field).await? {
            self.count(c.len())?;
            bytes += c.len() as u64;
            hasher.update(&c);
            file.write_all(&c).await.map_err(ApiError::internal)?;
        }
        file.sync_all().await.map_err(ApiError::internal)?;
        drop(file);
        if bytes == 0 {
            return Err(ApiError::invalid(format!("{name}: empty file"), name));
        }
        let digest = hex(&hasher.finalize());
        let dest = blob_path(&self.s.data_dir, &digest);
        if !dest.exists() {
            tokio::fs::rename(&tmp, &dest)
                .await
                .map_err(ApiError::internal)?;
            staged.kept = true;
        }
        Ok(Part::Blob { digest, bytes })
    }

    /// Read every part: `files` are streamed to blobs, `texts` kept as strings; other names are
    /// rejected. On 413 the rest of the body is drained (bounded) so the client reads the answer.
    async fn read(
        &mut self,
        req: Request,
        files: &[&str],
        texts: &[&str],
    ) -> ApiResult<HashMap<String, Part>> {
        let limit = self.s.max_upload_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            drain(req.into_body(), limit).await;
            return Err(ApiError::too_large(limit));
        }
        let mut multipart = Multipart::from_request(req, &()).await.map_err(|e| {
            ApiError::bad(
                format!("expected a multipart/form-data body: {}", e.body_text()),
                "body",
            )
        })?;
        let mut parts = HashMap::new();
        loop {
            let field = match tokio::time::timeout(UPLOAD_IDLE, multipart.next_field()).await {
                Ok(Ok(f)) => f,
                Ok(Err(e)) => {
                    return Err(ApiError::bad(
                        format!("malformed multipart body: {e}"),
                        "body",
                    ))
                }
                Err(_) => {
                    return Err(ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "upload stalled",
                        Some("body"),
                    ))
                }
            };
            let Some(mut field) = field else { break };
            let name = field.name().unwrap_or("").to_string();
            if parts.contains_key(&name) {
                return Err(ApiError::bad(format!("{name}: given twice"), &name));
            }
            let result = if files.contains(&name.as_str()) {
                self.blob(&mut field, &name).await
            } else if texts.contains(&name.as_str()) {
                self.text(&mut field, &name).await.map(Part::Text)
            } else {
                let known: Vec<&str> = files.iter().chain(texts).copied().collect();
                Err(ApiError::bad(
                    format!("unknown part {name:?}; expected {}", known.join(", ")),
                    &name,
                ))
            };
            match result {
                Ok(p) => {
                    parts.insert(name, p);
                }
                Err(e) if e.status == StatusCode::PAYLOAD_TOO_LARGE => {
                    drop(field);
                    while let Ok(Ok(Some(mut f))) =
                        tokio::time::timeout(UPLOAD_IDLE, multipart.next_field()).await
                    {
                        while let Ok(Ok(Some(_))) =
                            tokio::time::timeout(UPLOAD_IDLE, f.chunk()).await
                        {
                        }
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(parts)
    }
}

/// Read and discard up to `4 * limit` (at least 64 MiB) of a rejected body, so that the
/// client, still sending, gets the 413 instead of a reset connection.
async fn drain(body: Body, limit: u64) {
    use futures_util::StreamExt;
    let cap = (limit.saturating_mul(4)).max(64 << 20);
    let mut stream = body.into_data_stream();
    let mut seen = 0u64;
    while let Ok(Some(Ok(c))) = tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        seen += c.len() as u64;
        if seen > cap {
            break;
        }
    }
}

pub fn random_hex(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    hex(&bytes)
}

fn take_text(parts: &mut HashMap<String, Part>, name: &str) -> Option<String> {
    match parts.remove(name) {
        Some(Part::Text(t)) => Some(t),
        _ => None,
    }
}

fn take_blob(parts: &mut HashMap<String, Part>, name: &str) -> Option<(String, u64)> {
    match parts.remove(name) {
        Some(Part::Blob { digest, bytes }) => Some((digest, bytes)),
        _ => None,
    }
}

fn valid_tensor_name(name: &str, field: &str) -> ApiResult<()> {
    if name.is_empty() || name.len() > 256 || name.chars().any(|c| c.is_control()) {
        return Err(ApiError::invalid(
            format!("{field}: expected a tensor name (1 to 256 printable characters)"),
            field,
        ));
    }
    Ok(())
}

fn parse_input(text: &str) -> ApiResult<String> {
    let dims: Result<Vec<usize>, _> = text.split(',').map(|d| d.trim().parse::<usize>()).collect();
    match dims {
        Ok(d) if d.len() == 3 && d.iter().all(|&x| (1..=65536).contains(&x)) => Ok(d
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")),
        _ => Err(ApiError::invalid(
            format!("input: expected C,H,W with three positive integers, found {text:?}"),
            "input",
        )),
    }
}

async fn upload_model(
    State(s): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    req: Request,
) -> ApiResult<Response> {
    let mut up = Upload { s: &s, total: 0 };
    let mut parts = up
        .read(req, &["spec", "weights"], &["arch", "input"])
        .await?;
    let spec = take_blob(&mut parts, "spec");
    let arch = take_text(&mut parts, "arch");
    let input = take_text(&mut parts, "input");
    let Some((weights, weights_bytes)) = take_blob(&mut parts, "weights") else {
        return Err(ApiError::invalid(
            "weights: required (a safetensors state_dict, as a file part)",
            "weights",
        ));
    };
    let (key, spec_blob, arch, input, bytes) = match (spec, arch) {
        (Some((digest, n)), None) => {
            if input.is_some() {
                return Err(ApiError::invalid(
                    "input: only with arch (a spec gives its own input shape)",
                    "input",
                ));
            }
            let text = tokio::fs::read(blob_path(&s.data_dir, &digest))
                .await
                .map_err(ApiError::internal)?;
            match serde_json::from_slice::<Value>(&text) {
                Ok(Value::Object(_)) => {}
                Ok(_) => return Err(ApiError::invalid("spec: expected a JSON object", "spec")),
                Err(e) => {
                    return Err(ApiError::invalid(
                        format!("spec: not valid JSON: {e}"),
                        "spec",
                    ))
                }
            }
            (format!("spec:{digest}"), Some(digest), None, None, n)
        }
        (None, Some(arch)) => {
            if !["resnet18", "resnet34"].contains(&arch.as_str()) {
                return Err(ApiError::invalid(
                    format!("arch: expected resnet18 or resnet34, found {arch:?}"),
                    "arch",
                ));
            }
            let input = parse_input(input.as_deref().unwrap_or("3,224,224"))?;
            (
                format!("arch:{arch}:{input}"),
                None,
                Some(arch),
                Some(input),
                0,
            )
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "spec: required (a model spec JSON file part), or give arch instead",
                "spec",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "arch: give either spec or arch, not both",
                "arch",
            ))
        }
    };
    let id = sha256_hex(format!("nshap.model:{key}:weights:{weights}").as_bytes());
    let model = Model {
        id: id.clone(),
        spec_blob,
        arch,
        input,
        weights_blob: weights,
        bytes: (bytes + weights_bytes) as i64,
        created_at: now(),
    };
    let created = s.runner.db.add_model(tenant, &model)?;
    let model = s.runner.db.model(tenant, &id)?.unwrap_or(model);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(model_view(&model))).into_response())
}

fn model_view(m: &Model) -> Value {
    json!({
        "id": m.id,
        "spec_digest": m.spec_blob,
        "arch": m.arch,
        "input": m.input,
        "weights_digest": m.weights_blob,
        "bytes": m.bytes,
        "created_at": m.created_at,
    })
}

fn dataset_view(d: &Dataset) -> Value {
    json!({
        "id": d.id,
        "digest": d.blob,
        "inputs_name": d.inputs_name,
        "labels_name": d.labels_name,
        "bytes": d.bytes,
        "created_at": d.created_at,
    })
}

async fn upload_dataset(
    State(s): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    req: Request,
) -> ApiResult<Response> {
    let mut up = Upload { s: &s, total: 0 };
    let mut parts = up
        .read(req, &["data"], &["inputs_name", "labels_name"])
        .await?;
    let Some((digest, bytes)) = take_blob(&mut parts, "data") else {
        return Err(ApiError::invalid(
            "data: required (a safetensors eval set with inputs and labels, as a file part)",
            "data",
        ));
    };
    let inputs_name = take_text(&mut parts, "inputs_name").unwrap_or_else(|| "inputs".into());
    let labels_name = take_text(&mut parts, "labels_name").unwrap_or_else(|| "labels".into());
    valid_tensor_name(&inputs_name, "inputs_name")?;
    valid_tensor_name(&labels_name, "labels_name")?;
    let id = sha256_hex(
        format!("nshap.dataset:{digest}:inputs:{inputs_name}:labels:{labels_name}").as_bytes(),
    );
    let d = Dataset {
        id: id.clone(),
        blob: digest,
        inputs_name,
        labels_name,
        bytes: bytes as i64,
        created_at: now(),
    };
    let created = s.runner.db.add_dataset(tenant, &d)?;
    let d = s.runner.db.dataset(tenant, &id)?.unwrap_or(d);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(dataset_view(&d))).into_response())
}

fn valid_id(id: &str, len: usize) -> bool {
    id.len() == len
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

async fn get_model(
    State(s): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    if !valid_id(&id, 64) {
        return Err(ApiError::not_found("model", None));
    }
    match s.runner.db.model(tenant, &id)? {
        Some(m) => Ok(axum::Json(model_view(&m)).into_response()),
        None => Err(ApiError::not_found("model", None)),
    }
}

async fn get_dataset(
    State(s): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    if !valid_id(&id, 64) {
        return Err(ApiError::not_found("dataset", None));
    }
    match s.runner.db.dataset(tenant, &id)? {
        Some(d) => Ok(axum::Json(dataset_view(&d)).into_response()),
        None => Err(ApiError::not_found("dataset", None)),
    }
}

// ---------------------------------------------------------------------------------------------
// Jobs

/// The body of a JSON request: at most MAX_JSON_BYTES, a JSON object.
async fn json_object(req: Request) -> ApiResult<Map<String, Value>> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_JSON_BYTES as u64) {
        drain(req.into_body(), MAX_JSON_BYTES as u64).await;
        return Err(ApiError::too_large(MAX_JSON_BYTES as u64));
    }
    let bytes = axum::body::to_bytes(req.into_body(), MAX_JSON_BYTES)
        .await
        .map_err(|_| ApiError::too_large(MAX_JSON_BYTES as u64))?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad(format!("malformed JSON: {e}"), "body"))?;
    match value {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::bad("expected a JSON object", "body")),
    }
}

fn get_str<'a>(m: &'a Map<String, Value>, name: &str) -> ApiResult<Option<&'a str>> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid(
            format!("{name}: expected a string"),
            name,
        )),
    }
}

fn get_uint(m: &Map<String, Value>, name: &str, min: u64, max: u64) -> ApiResult<Option<u64>> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(ApiError::invalid(
                format!("{name}: expected an integer from {min} to {max}, found {n}"),
                name,
            )),
        },
        Some(_) => Err(ApiError::invalid(
            format!("{name}: expected an integer from {min} to {max}"),
            name,
        )),
    }
}

fn one_of(
    m: &Map<String, Value>,
    name: &str,
    allowed: &[&str],
    default: &str,
) -> ApiResult<String> {
    match get_str(m, name)? {
        None => Ok(default.to_string()),
        Some(v) if allowed.contains(&v) => Ok(v.to_string()),
        Some(v) => Err(ApiError::invalid(
            format!(
                "{name}: expected one of {}, found {v:?}",
                allowed.join(", ")
            ),
            name,
        )),
    }
}

fn valid_node_name(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 200
        && !p.starts_with('-')
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:/#[]-*?".contains(c))
}

pub const JOB_FIELDS: &[&str] = &[
    "model",
    "dataset",
    "players",
    "method",
    "metric",
    "baseline",
    "top_k",
    "budget",
    "seed",
    "backend",
    "examples_per_eval",
];

fn job_params(m: &Map<String, Value>) -> ApiResult<JobParams> {
    if let Some(unknown) = m.keys().find(|k| !JOB_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            format!(
                "unknown field {unknown:?}; expected {}",
                JOB_FIELDS.join(", ")
            ),
            unknown,
        ));
    }
    let players: Vec<String> =
        match m.get("players") {
            Some(Value::String(s)) => s.split(',').map(|p| p.trim().to_string()).collect(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        ApiError::invalid("players: expected an array of node names", "players")
                    })
                })
                .collect::<ApiResult<_>>()?,
            None | Some(Value::Null) => return Err(ApiError::invalid(
                "players: required (node names whose channels are the players, e.g. [\"relu2\"])",
                "players",
            )),
            Some(_) => {
                return Err(ApiError::invalid(
                    "players: expected an array of node names",
                    "players",
                ))
            }
        };
    if players.is_empty() || players.len() > 256 {
        return Err(ApiError::invalid(
            "players: give 1 to 256 node names",
            "players",
        ));
    }
    if let Some(bad) = players.iter().find(|p| !valid_node_name(p)) {
        return Err(ApiError::invalid(
            format!("players: {bad:?} is not a node name"),
            "players",
        ));
    }
    let method = one_of(
        m,
        "method",
        &[
            "auto",
            "exact",
            "certified",
            "regression",
            "permutation",
            "tmab",
            "cmcs",
            "loo",
        ],
        "tmab",
    )?;
    let metric = match get_str(m, "metric")? {
        None => "accuracy".to_string(),
        Some(v @ ("accuracy" | "neg_loss")) => v.to_string(),
        Some(v) => match v.strip_prefix("class_accuracy:").map(str::parse::<u32>) {
            Some(Ok(c)) => format!("class_accuracy:{c}"),
            _ => {
                return Err(ApiError::invalid(
                    format!(
                    "metric: expected accuracy, neg_loss or class_accuracy:<class>, found {v:?}"
                ),
                    "metric",
                ))
            }
        },
    };
    let baseline = one_of(m, "baseline", &["zero", "mean", "reference"], "zero")?;
    let backend = one_of(m, "backend", &["auto", "cpu", "gpu"], "auto")?;
    Ok(JobParams {
        players,
        method,
        metric,
        baseline,
        top_k: get_uint(m, "top_k", 1, 1_000_000)?.unwrap_or(10),
        budget: get_uint(m, "budget", 1, 1_000_000_000_000)?.unwrap_or(200_000),
        seed: get_uint(m, "seed", 0, u64::MAX)?.unwrap_or(0),
        backend,
        examples_per_eval: get_uint(m, "examples_per_eval", 1, 1 << 40)?,
    })
}

pub fn read_progress(dir: &std::path::Path) -> Option<Value> {
    let text = std::fs::read(dir.join("progress.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

fn job_view(s: &AppState, job: &Job) -> Value {
    let dir = job_dir(&s.data_dir, &job.id);
    let progress = if job.state == "queued" && job.attempts == 0 {
        None
    } else {
        read_progress(&dir)
    };
    let end = job.finished_at.unwrap_or_else(now);
    let base = format!("/v1/jobs/{}", job.id);
    let mut results = Map::new();
    if job.state == "done" {
        for f in ["values.csv", "report.json", "ablation.svg"] {
            if dir.join(f).exists() {
                results.insert(f.to_string(), json!(format!("{base}/{f}")));
            }
        }
    }
    json!({
        "id": job.id,
        "state": job.state,
        "model": job.model_id,
        "dataset": job.dataset_id,
        "params": job.params,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "queued_seconds": job.started_at.unwrap_or(end) - job.created_at,
        "running_seconds": job.started_at.map(|t| end - t),
        "attempts": job.attempts,
        "progress": progress,
        "error": job.error,
        "ablation_error": job.ablation_error,
        "events": format!("{base}/events"),
        "results": results,
    })
}

async fn create_job(
    State(s): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    req: Request,
) -> ApiResult<Response> {
    if s.runner.is_shutting_down() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
            None,
        ));
    }
    let m = json_object(req).await?;
    let model = match get_str(&m, "model")? {
        Some(v) => v.to_string(),
        None => return Err(ApiError::invalid("model: required (a model id)", "model")),
    };
    let dataset = match get_str(&m, "dataset")? {
        Some(v) => v.to_string(),
        None => {
            return Err(ApiError::invalid(
                "dataset: required (a dataset id)",
                "dataset",
            ))
        }
    };
    let params = job_params(&m)?;
    if !valid_id(&model, 64) || s.runner.db.model(tenant, &model)?.is_none() {
        return Err(ApiError::not_found("model", Some("model")));
    }
    if !valid_id(&dataset, 64) || s.runner.db.dataset(tenant, &dataset)?.is_none() {
        return Err(ApiError::not_found("dataset", Some("dataset")));
    }
    let job = Job {
        id: random_hex(16),
        tenant_id: tenant,
        model_id: model,
        dataset_id: dataset,
        params,
        state: "queued".into(),
        created_at: now(),
        started_at: None,
        finished_at: None,
        error: None,
        ablation_error: None,
        pid: None,
        attempts: 0,
    };
    s.runner.db.add_job(&job)?;
    s.runner.wake();
    let mut resp = (StatusCode::CREATED, axum::Json(job_view(&s, &job))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/jobs/{}", job.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

fn tenant_job(s: &AppState, tenant: i64, id: &str) -> ApiResult<Job> {
    if !valid_id(id, 32) {
        return Err(ApiError::not_found("job", None));
    }
    s.runner
        .db
        .job(tenant, id)?
        .ok_or_else(|| ApiError::not_found("job", None))
}

async fn get_job(
    State(s): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let job = tenant_job(&s, tenant, &id)?;
    Ok(axum::Json(job_view(&s, &job)).into_response())
}

#[derive(serde::Deserialize)]
struct ListQuery {
    state: Option<String>,
    limit: Option<String>,
}

async fn list_jobs(
    State(s): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| ApiError::bad(e.body_text(), "query"))?;
    const STATES: [&str; 5] = ["queued", "running", "done", "failed", "cancelled"];
    if let Some(st) = &q.state {
        if !STATES.contains(&st.as_str()) {
            return Err(ApiError::invalid(
                format!("state: expected one of {}", STATES.join(", ")),
                "state",
            ));
        }
    }
    let limit = match &q.limit {
        None => 100,
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(
                    "limit: expected an integer from 1 to 1000",
                    "limit",
                ))
            }
        },
    };
    let jobs = s.runner.db.list_jobs(tenant, q.state.as_deref(), limit)?;
    let views: Vec<Value> = jobs.iter().map(|j| job_view(&s, j)).collect();
    Ok(axum::Json(json!({"jobs": views})).into_response())
}

async fn cancel_job(
    State(s): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    if !valid_id(&id, 32) {
        return Err(ApiError::not_found("job", None));
    }
    let Some(before) = s.runner.db.cancel(tenant, &id)? else {
        return Err(ApiError::not_found("job", None));
    };
    match before.as_str() {
        "running" => s.runner.cancel(&id),
        "queued" | "cancelled" => {}
        other => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("the job is already {other}"),
                None,
            ))
        }
    }
    let job = tenant_job(&s, tenant, &id)?;
    Ok(axum::Json(job_view(&s, &job)).into_response())
}

async fn result_file(
    s: &AppState,
    tenant: i64,
    id: &str,
    file: &str,
    content_type: &'static str,
) -> ApiResult<Response> {
    let job = tenant_job(s, tenant, id)?;
    if job.state != "done" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("the job is {}; {file} is there once it is done", job.state),
            None,
        ));
    }
    let path = job_dir(&s.data_dir, id).join(file);
    match tokio::fs::read(&path).await {
        Ok(bytes) => Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response()),
        Err(_) => {
            let why = job
                .ablation_error
                .as_deref()
                .filter(|_| file.starts_with("ablation"))
                .map(|e| format!(": the ablation failed: {e}"))
                .unwrap_or_default();
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("{file} not found{why}"),
                None,
            ))
        }
    }
}

async fn values_csv(
    State(s): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    result_file(&s, tenant, &id, "values.csv", "text/csv").await
}

async fn report_json(
    State(s): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    result_file(&s, tenant, &id, "report.json", "application/json").await
}

async fn ablation_svg(
    State(s): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    result_file(&s, tenant, &id, "ablation.svg", "image/svg+xml").await
}

fn is_terminal(state: &str) -> bool {
    matches!(state, "done" | "failed" | "cancelled")
}

/// Server-sent events: `progress` (the job, as GET /v1/jobs/{id} shows it) whenever its state or
/// progress changes, then `end` once it is done, failed or cancelled (or the server stops).
async fn job_events(
    State(s): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    tenant_job(&s, tenant, &id)?;
    struct St {
        s: AppState,
        tenant: i64,
        id: String,
        last: Option<String>,
        end_next: bool,
        ended: bool,
    }
    let st = St {
        s,
        tenant,
        id,
        last: None,
        end_next: false,
        ended: false,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        if st.ended {
            return None;
        }
        loop {
            if st.end_next || *st.s.shutdown.borrow() {
                st.ended = true;
                let why = if st.end_next {
                    "finished"
                } else {
                    "server shutting down"
                };
                let ev = Event::default().event("end").data(why);
                return Some((Ok::<_, std::convert::Infallible>(ev), st));
            }
            let job = match st.s.runner.db.job(st.tenant, &st.id) {
                Ok(Some(j)) => j,
                _ => {
                    st.ended = true;
                    let ev = Event::default().event("end").data("job not found");
                    return Some((Ok(ev), st));
                }
            };
            let view = job_view(&st.s, &job);
            let key = format!("{}{}", job.state, view["progress"]);
            if st.last.as_deref() != Some(key.as_str()) {
                st.last = Some(key);
                st.end_next = is_terminal(&job.state);
                let ev = Event::default().event("progress").data(view.to_string());
                return Some((Ok(ev), st));
            }
            let mut shutdown = st.s.shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = shutdown.changed() => {}
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// Metrics

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics(State(s): State<AppState>) -> ApiResult<Response> {
    use std::fmt::Write as _;
    let counts: HashMap<String, i64> = s.runner.db.counts_by_state()?.into_iter().collect();
    let mut out = String::new();
    let count = |st: &str| counts.get(st).copied().unwrap_or(0);
    let _ = writeln!(out, "# HELP nshap_queue_depth Jobs waiting for a slot.");
    let _ = writeln!(out, "# TYPE nshap_queue_depth gauge");
    let _ = writeln!(out, "nshap_queue_depth {}", count("queued"));
    let _ = writeln!(out, "# HELP nshap_jobs Jobs in the store, by state.");
    let _ = writeln!(out, "# TYPE nshap_jobs gauge");
    for st in ["queued", "running", "done", "failed", "cancelled"] {
        let _ = writeln!(out, "nshap_jobs{{state=\"{st}\"}} {}", count(st));
    }
    let _ = writeln!(
        out,
        "# HELP nshap_running_jobs Jobs with a live process, by requested backend."
    );
    let _ = writeln!(out, "# TYPE nshap_running_jobs gauge");
    let by_backend = s.runner.running_by_backend();
    for b in ["auto", "cpu", "gpu"] {
        let n = by_backend.get(b).copied().unwrap_or(0);
        let _ = writeln!(out, "nshap_running_jobs{{backend=\"{b}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP nshap_max_jobs Concurrent job slots.");
    let _ = writeln!(out, "# TYPE nshap_max_jobs gauge");
    let _ = writeln!(out, "nshap_max_jobs {}", s.runner.max_jobs);
    let (total, rate) = s.runner.evaluations();
    let _ = writeln!(out, "# HELP nshap_evaluations_per_second Coalition evaluations per second over all running jobs (last second).");
    let _ = writeln!(out, "# TYPE nshap_evaluations_per_second gauge");
    let _ = writeln!(out, "nshap_evaluations_per_second {rate}");
    let _ = writeln!(
        out,
        "# HELP nshap_evaluations_total Coalition evaluations done by this server process."
    );
    let _ = writeln!(out, "# TYPE nshap_evaluations_total counter");
    let _ = writeln!(out, "nshap_evaluations_total {total}");
    let adapter = s
        .runner
        .adapter
        .lock()
        .map(|a| a.clone())
        .unwrap_or(None)
        .unwrap_or_else(|| "probing".into());
    let _ = writeln!(out, "# HELP nshap_gpu_adapter_info The first GPU adapter wgpu sees (none: jobs run on the CPU backend).");
    let _ = writeln!(out, "# TYPE nshap_gpu_adapter_info gauge");
    let _ = writeln!(
        out,
        "nshap_gpu_adapter_info{{adapter=\"{}\"}} 1",
        label(&adapter)
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
