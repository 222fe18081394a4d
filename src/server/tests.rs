//! The router in process: the browser guard, typed bodies, batch search, listing, the OpenAPI
//! document against the routes, and random requests (no panic, a documented status, nothing
//! written by a refused request).

use super::harness::Harness;
use super::{ServerOptions, TokenDigest};
use proptest::prelude::*;
use serde_json::{json, Value};

const JSON: (&str, &str) = ("content-type", "application/json");

fn send(
    h: &Harness,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let (status, _, bytes) = h
        .send(method, uri, headers, body.as_bytes())
        .expect("an answer");
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
    };
    (status, v)
}

fn with_rows(h: &Harness, n: usize) {
    let rows: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("p{i:03}"), "text": format!("passage {i}"), "vector": [1.0, i as f32, 0.0, 0.0]}))
        .collect();
    let (s, v) = send(
        h,
        "POST",
        "/passages",
        &[JSON],
        &json!({ "passages": rows }).to_string(),
    );
    assert_eq!(s, 200, "{v}");
}

#[test]
fn tokens_match_only_themselves() {
    let t = TokenDigest::new("s3cret-token-of-some-length");
    assert!(t.matches("s3cret-token-of-some-length"));
    assert!(!t.matches("s3cret-token-of-some-lengtH"));
    assert!(!t.matches(""));
}

#[test]
fn web_pages_cannot_write_or_read() {
    let h = Harness::new(ServerOptions::default());
    let row = r#"{"passages":[{"id":"evil","text":"planted","vector":[1,0,0,0]}]}"#;
    // A "simple" cross-origin POST: text/plain, from a page.
    let (s, v) = send(
        &h,
        "POST",
        "/passages",
        &[
            ("content-type", "text/plain"),
            ("origin", "http://evil.example"),
        ],
        row,
    );
    assert_eq!(s, 415, "{v}");
    // No content type at all.
    assert_eq!(send(&h, "POST", "/passages", &[], row).0, 415);
    // JSON from a page (the browser would have asked first): the origin is refused.
    let (s, v) = send(
        &h,
        "POST",
        "/passages",
        &[JSON, ("origin", "http://evil.example")],
        row,
    );
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("--allow-origin"),
        "{v}"
    );
    // DNS rebinding: a name that is not this server's.
    let (s, v) = send(&h, "GET", "/stats", &[("host", "evil.example:80")], "");
    assert_eq!(s, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("--allow-host"), "{v}");
    // A preflight from a page not allowed.
    let pre = [
        ("origin", "http://evil.example"),
        ("access-control-request-method", "POST"),
    ];
    assert_eq!(send(&h, "OPTIONS", "/passages", &pre, "").0, 403);
    assert_eq!(h.passages(), 0, "nothing was written");
    // What a local client sends is accepted.
    let (s, v) = send(
        &h,
        "POST",
        "/passages",
        &[JSON, ("host", "127.0.0.1:7700")],
        row,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(h.passages(), 1);
}

#[test]
fn an_allowed_origin_gets_cors_and_can_search() {
    let h = Harness::new(ServerOptions {
        allow_origins: vec!["tauri://localhost".into(), "http://localhost:3000/".into()],
        ..Default::default()
    });
    with_rows(&h, 3);
    let pre = [
        ("origin", "http://localhost:3000"),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type"),
    ];
    let (status, headers, _) = h.send("OPTIONS", "/search", &pre, b"").unwrap();
    assert!(status == 200 || status == 204, "{status}");
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert!(headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    let body = br#"{"vector":[1,0,0,0],"k":2}"#;
    let (status, headers, bytes) = h
        .send(
            "POST",
            "/search",
            &[JSON, ("origin", "tauri://localhost")],
            body,
        )
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["access-control-allow-origin"], "tauri://localhost");
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["hits"].as_array().unwrap().len(), 2);
}

#[test]
fn bodies_are_typed() {
    let h = Harness::new(ServerOptions::default());
    with_rows(&h, 2);
    let (s, v) = send(
        &h,
        "POST",
        "/search",
        &[JSON],
        r#"{"vector":[1,0,0,0],"k":3,"adpter":true}"#,
    );
    assert_eq!(s, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `adpter`"),
        "{v}"
    );
    let (s, v) = send(
        &h,
        "POST",
        "/search",
        &[JSON],
        r#"{"vector":[1,0,0,0],"k":3,"adapter":"false"}"#,
    );
    assert_eq!(s, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("adapter: invalid type"),
        "{v}"
    );
    let (s, v) = send(
        &h,
        "POST",
        "/search",
        &[JSON],
        r#"{"vector":[1,0,0,0],"k":-1}"#,
    );
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().starts_with("k:"), "{v}");
    let (s, v) = send(
        &h,
        "POST",
        "/passages",
        &[JSON],
        r#"{"passages":[],"upsrt":true}"#,
    );
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("upsrt"), "{v}");
    let (s, v) = send(&h, "GET", "/passages?limt=3", &[], "");
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("limt"), "{v}");
    assert_eq!(h.passages(), 2);
}

#[test]
fn a_batch_answers_as_its_queries_one_by_one() {
    let h = Harness::new(ServerOptions::default());
    with_rows(&h, 20);
    let queries = [
        json!([1.0, 3.0, 0.0, 0.0]),
        json!([0.0, -1.0, 1.0, 0.0]),
        json!([2.0, 0.5, 0.0, 1.0]),
    ];
    let (s, batch) = send(
        &h,
        "POST",
        "/search",
        &[JSON],
        &json!({"queries": queries, "k": 4}).to_string(),
    );
    assert_eq!(s, 200, "{batch}");
    let results = batch["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for (q, r) in queries.iter().zip(results) {
        let (s, one) = send(
            &h,
            "POST",
            "/search",
            &[JSON],
            &json!({"vector": q, "k": 4}).to_string(),
        );
        assert_eq!(s, 200);
        assert_eq!(one["hits"], r["hits"]);
    }
    // Text queries need an encoder: 503 names it, nothing else changes.
    let (s, v) = send(
        &h,
        "POST",
        "/search",
        &[JSON],
        r#"{"queries":["a text",[1,0,0,0]]}"#,
    );
    assert_eq!(s, 503, "{v}");
    let (s, _) = send(
        &h,
        "POST",
        "/search",
        &[JSON],
        r#"{"queries":[[1,0,0,0]],"text":"x"}"#,
    );
    assert_eq!(s, 400);
}

#[test]
fn passages_are_listed_in_pages() {
    let h = Harness::new(ServerOptions::default());
    with_rows(&h, 25);
    let mut seen = Vec::new();
    let mut uri = "/passages?limit=10".to_string();
    loop {
        let (s, v) = send(&h, "GET", &uri, &[], "");
        assert_eq!(s, 200, "{v}");
        for p in v["passages"].as_array().unwrap() {
            seen.push(p["id"].as_str().unwrap().to_string());
        }
        match v["next"].as_str() {
            Some(next) => uri = format!("/passages?limit=10&after={next}"),
            None => break,
        }
    }
    let want: Vec<String> = (0..25).map(|i| format!("p{i:03}")).collect();
    assert_eq!(seen, want);
    assert_eq!(send(&h, "GET", "/passages?limit=0", &[], "").0, 400);
    assert_eq!(send(&h, "GET", "/passages?limit=1001", &[], "").0, 400);
}

/// Every path and method of the OpenAPI document is a route, and every route is in it.
#[test]
fn the_openapi_document_matches_the_routes() {
    let h = Harness::new(ServerOptions::default());
    let (s, doc) = send(&h, "GET", "/openapi.json", &[], "");
    assert_eq!(s, 200);
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "delete", "put", "patch"].contains(&method.as_str()) {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    documented.sort();
    let routes = [
        "DELETE /passages/{id}",
        "GET /health",
        "GET /openapi.json",
        "GET /passages",
        "GET /passages/{id}",
        "GET /stats",
        "POST /passages",
        "POST /search",
    ];
    assert_eq!(documented, routes);
    // Each documented route is served (neither 404 for its path nor 405 for its method),
    // and the methods it does not document are not.
    for route in routes {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path.replace("{id}", "some-id");
        let (s, v) = send(&h, method, &path, &[JSON], "{}");
        assert!(
            s != 405 && !(s == 404 && v["error"].as_str().unwrap_or("").starts_with("no route")),
            "{route}: {s} {v}"
        );
        let (s, _) = send(&h, "PUT", &path, &[JSON], "{}");
        assert_eq!(s, 405, "PUT {path}");
    }
    // The search body's fields in the document are the request type's.
    let fields: Vec<&String> = doc["components"]["schemas"]["SearchRequest"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert!(
        fields.iter().any(|f| *f == "queries") && fields.iter().any(|f| *f == "by_file"),
        "{fields:?}"
    );
}

#[test]
fn the_token_guards_every_route_but_health() {
    let token = "a-token-of-sufficient-length";
    let h = Harness::new(ServerOptions {
        token: Some(token.into()),
        ..Default::default()
    });
    assert_eq!(send(&h, "GET", "/health", &[], "").0, 200);
    let (s, _) = send(&h, "GET", "/stats", &[], "");
    assert_eq!(s, 401);
    let auth = format!("bearer {token}");
    assert_eq!(
        send(&h, "GET", "/stats", &[("authorization", &auth)], "").0,
        200
    );
    let row = r#"{"passages":[{"id":"a","text":"t","vector":[1,0,0,0]}]}"#;
    assert_eq!(
        send(
            &h,
            "POST",
            "/passages",
            &[JSON, ("authorization", "Bearer wrong-token-of-length")],
            row
        )
        .0,
        401
    );
    assert_eq!(h.passages(), 0);
}

fn method() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("DELETE"),
        Just("PUT"),
        Just("OPTIONS"),
        Just("PATCH")
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/health".to_string()),
        Just("/stats".to_string()),
        Just("/search".to_string()),
        Just("/passages".to_string()),
        "/passages\\?[a-z=&%0-9]{0,20}",
        "/passages/[a-zA-Z0-9%+/._~-]{0,12}",
        "/[a-z%./]{0,16}",
        Just("/openapi.json".to_string()),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "\\{\"(vector|text|k|queries|passages|lang|mode|upsert|adapter|meta)\":(1|-1|\"x\"|\\[1,0,0,0\\]|true|null|\\[\\]|\\{\\}|1e400)\\}".prop_map(String::into_bytes),
        Just(br#"{"passages":[{"id":"r","text":"t","vector":[1,0,0,0]}]}"#.to_vec()),
        Just(br#"{"passages":[{"id":"r","text":"t","vector":[1,0,0]}]}"#.to_vec()),
        Just(br#"{"queries":[[1,0,0,0],"t",[0,0]],"k":2}"#.to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Random requests through the whole router: an answer with a documented status, never a
    /// panic; a refused write leaves the index as it was.
    #[test]
    fn random_requests_get_documented_answers(
        method in method(),
        path in path(),
        json_type in any::<bool>(),
        origin in proptest::option::of(prop_oneof![Just("http://evil.example"), Just("null")]),
        host in proptest::option::of(prop_oneof![Just("127.0.0.1:1"), Just("evil.example"), Just("localhost")]),
        body in body(),
    ) {
        let h = Harness::new(ServerOptions::default());
        let mut headers = vec![];
        if json_type { headers.push(JSON); }
        if let Some(o) = origin { headers.push(("origin", o)); }
        if let Some(host) = host { headers.push(("host", host)); }
        let before = h.passages();
        if let Some((status, _, bytes)) = h.send(method, &path, &headers, &body) {
            prop_assert!(super::harness::is_documented(status), "{method} {path}: {status}");
            if status != 200 && status != 204 {
                let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                prop_assert!(v["error"].is_string(), "{method} {path}: {status} without a message");
                prop_assert_eq!(h.passages(), before);
            }
        }
    }
}
