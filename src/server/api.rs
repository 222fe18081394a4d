//! The API's request and answer bodies as types: requests are read with
//! `deny_unknown_fields`, so an unknown field or a value of the wrong type is a 400 that names
//! the field; the OpenAPI document (`GET /openapi.json`) is generated from the same types.

use crate::index::FileHit;
use crate::types::{Fusion, Hit, Passage, SearchMode};
use crate::FirstPass;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Most queries in one `POST /search`.
pub const MAX_QUERIES: usize = 1024;
/// Most passages one `GET /passages` lists.
pub const MAX_LIST: usize = 1000;

/// `POST /search`: one query (`text` or `vector`) or a batch (`queries`), and how to search.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// A text query, encoded by the index's encoder.
    pub text: Option<String>,
    /// A query vector of the index's dimension (read as double precision, so that a value
    /// beyond `f32` is refused as a non-finite vector, 422).
    pub vector: Option<Vec<f64>>,
    /// A batch of queries, each a text or a vector, answered with one encode and one scan:
    /// the answer is `{"results": [...]}`, one entry per query in order.
    pub queries: Option<Vec<Query>>,
    /// How many hits (or files) each query returns (default 10).
    pub k: Option<usize>,
    /// Only passages in one of these languages.
    pub lang: Option<Vec<String>>,
    /// Only passages whose metadata field equals the value (or, for an array, one of its
    /// values).
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Map<String, Value>>,
    /// Pass text queries through the stored query adapter (default true).
    pub adapter: Option<bool>,
    /// The text queries' language (picks that language's adapter and stemmer).
    pub query_lang: Option<String>,
    /// The first pass: `exact`, `i8` or `binary` (default: the index's).
    pub first_pass: Option<FirstPass>,
    /// Rows rescored for each hit after an approximate first pass.
    pub oversample: Option<usize>,
    /// `dense` (default), `lexical` or `hybrid`.
    pub mode: Option<SearchMode>,
    /// How a hybrid search merges its two lists.
    pub fusion: Option<Fusion>,
    /// Candidates each list of a hybrid search contributes.
    pub depth: Option<usize>,
    /// Rank synced files instead of passages: each file once, with its best passage.
    pub by_file: Option<bool>,
}

/// One query of a batch: a text or a vector.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Query {
    /// A text query.
    Text(String),
    /// A query vector.
    Vector(Vec<f64>),
}

/// `POST /passages`: rows as `xqdb add` reads them from JSONL.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddRequest {
    /// The passages, each `{"id", "text", "title", "lang", "meta", "vector"}` (`id` and
    /// `text` required; `vector` unless the index has an encoder).
    #[schema(value_type = Vec<Object>)]
    pub passages: Vec<Value>,
    /// Replace passages whose id exists instead of refusing them (default false).
    #[serde(default)]
    pub upsert: bool,
}

/// `GET /passages?after=ID&limit=N`: a page of passages in id order.
#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Start after this id (from the first when absent).
    pub after: Option<String>,
    /// How many passages (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `"ok"`.
    pub status: &'static str,
    /// Live passages.
    pub passages: u64,
    /// The latest commit's sequence number.
    pub commit_seq: u64,
}

/// The answer to one query: `hits`, or with `by_file`, `files`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Answer {
    /// Passages, best first.
    Hits {
        /// The hits.
        hits: Vec<Hit>,
    },
    /// Files, best first, each with its best passage.
    Files {
        /// The files.
        files: Vec<FileHit>,
    },
}

/// `POST /search`: one answer, or `results` for a batch.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SearchAnswer {
    /// The answer to `text` or `vector`.
    One(Answer),
    /// The answers to `queries`, in order.
    Batch {
        /// One answer per query.
        results: Vec<Answer>,
    },
}

/// `GET /passages`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page {
    /// The passages, in id order.
    pub passages: Vec<Passage>,
    /// The id to pass as `after` for the next page; absent after the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `POST /passages`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Added {
    /// Passages written.
    pub added: usize,
    /// The commit that holds them.
    pub commit_seq: u64,
}

/// `DELETE /passages/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    /// The id deleted.
    pub deleted: String,
    /// The commit that deleted it.
    pub commit_seq: u64,
}

/// Every refusal: a 4xx or 5xx status with this body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What was wrong, for a person.
    pub error: String,
}

/// A refusal: the status and its message.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The message of the `{"error": ...}` body.
    pub message: String,
}

impl ApiError {
    /// A refusal with `status` (a valid 4xx/5xx code).
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
        }
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        ApiError::new(super::status_of(&e), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            axum::Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        match self.status {
            StatusCode::UNAUTHORIZED => {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        r
    }
}

/// Whether the request says its body is JSON (`application/json`, any parameters, any
/// case). Anything else could be a "simple" cross-origin request a web page may send
/// without asking.
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// The 415 refusal.
pub fn not_json() -> ApiError {
    ApiError::new(
        415,
        "the body must be JSON, sent with Content-Type: application/json",
    )
}

/// A vector as the index takes it.
pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Parses a JSON body into `T`; the message of a refusal names the field (`adapter: invalid
/// type: string "false", expected a boolean`).
pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = if path != "." {
            format!("{path}: {inner}")
        } else if inner.is_syntax() || inner.is_eof() {
            format!("the body is not JSON: {inner}")
        } else {
            inner.to_string()
        };
        ApiError::new(400, what)
    })?;
    de.end()
        .map_err(|e| ApiError::new(400, format!("the body is not JSON: {e}")))?;
    Ok(value)
}

/// A JSON request body of type `T`: 415 unless it is sent as JSON, 413 over the body limit,
/// 400 (naming the field) when it does not parse.
pub struct Body<T>(pub T);

impl<T, S> FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(not_json());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    413,
                    "the body exceeds the server's limit (--max-body-bytes)",
                )
            } else {
                ApiError::new(status.as_u16(), format!("cannot read the body: {e}"))
            }
        })?;
        parse(&bytes).map(Body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_field() {
        let e = parse::<SearchRequest>(br#"{"vector":[1,0],"adpter":true}"#).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("adpter"), "{}", e.message);
        let e = parse::<SearchRequest>(br#"{"vector":[1,0],"adapter":"false"}"#).unwrap_err();
        assert!(e.message.starts_with("adapter:"), "{}", e.message);
        assert!(e.message.contains("boolean"), "{}", e.message);
        let e = parse::<SearchRequest>(br#"{"k":1} x"#).unwrap_err();
        assert!(e.message.contains("not JSON"), "{}", e.message);
        let e = parse::<SearchRequest>(br#"{"mode":"fuzzy"}"#).unwrap_err();
        assert!(
            e.message.contains("mode") && e.message.contains("hybrid"),
            "{}",
            e.message
        );
        assert!(parse::<SearchRequest>(br#"{"queries":["a",[1,2]],"k":3}"#).is_ok());
    }

    #[test]
    fn json_is_told_by_its_media_type() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for (v, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("application/jsonx", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            assert_eq!(is_json(&h), ok, "{v}");
        }
    }
}
