//! The HTTP router in-process: every answer code, authentication, and the
//! durable rule (a 202 means the exact bytes are in `pending/`). Plus one run
//! of the real server ([`ghost_bridge::run`]) on a loopback port.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use ghost_bridge::auth::{sign_hub, sign_v1};
use ghost_bridge::http::{router, AppState};
use ghost_bridge::ingest::Ingestor;
use ghost_bridge::secrets::{Secret, SecretSource, Secrets};
use ghost_core::queue::QueueState;
use ghost_core::{Config, Layout};

const TOKEN: &str = "test-token-123";
const KEY: &str = "test-hmac-key";

struct Env {
    _dir: tempfile::TempDir,
    ing: Arc<Ingestor>,
    app: Router,
}

fn env(extra: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[targets.default]\naliases = [\"DEV\"]\nlegacy_root = \"/old/app\"\n[targets.web]\n{extra}");
    let cfg = Config::from_toml(dir.path(), &text, "test").unwrap();
    Layout::new(dir.path())
        .create(cfg.targets.keys().map(String::as_str))
        .unwrap();
    let ing = Arc::new(Ingestor::new(Arc::new(cfg)).unwrap());
    let secrets = Secrets {
        token: Secret::new(TOKEN),
        token_source: SecretSource::Configuration("bridge.token"),
        hmac_key: Secret::new(KEY),
        hmac_source: SecretSource::Configuration("bridge.hmac_key"),
    };
    let app = router(AppState::new(ing.clone(), Arc::new(secrets)))
        .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4242))));
    Env {
        _dir: dir,
        ing,
        app,
    }
}

impl Env {
    async fn call(&self, req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{status}: body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, headers, v)
    }

    async fn post(&self, path: &str, ctype: &str, body: impl Into<Vec<u8>>) -> (StatusCode, Value) {
        let (s, _, v) = self.call(req(path, ctype, body.into())).await;
        (s, v)
    }

    async fn post_json(&self, v: &Value) -> (StatusCode, Value) {
        self.post(
            "/v1/patches",
            "application/json",
            serde_json::to_vec(v).unwrap(),
        )
        .await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let (s, _, v) = self.call(r).await;
        (s, v)
    }

    fn pending(&self, target: &str) -> Vec<String> {
        self.ing
            .layout()
            .queue(target)
            .list(QueueState::Pending)
            .unwrap()
    }

    fn entry(&self, target: &str, name: &str) -> Vec<u8> {
        std::fs::read(
            self.ing
                .layout()
                .queue(target)
                .entry_path(QueueState::Pending, name),
        )
        .unwrap()
    }
}

fn req(path: &str, ctype: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(path)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, ctype)
        .body(Body::from(body))
        .unwrap()
}

fn patch(id: &str, content: &str) -> Value {
    json!({"id": id, "operations": [{"op": "write", "path": format!("{id}.txt"), "content": content}]})
}

/// Every field named in the answer's top-level errors.
/// The current Unix time in seconds (for `X-Ghost-Timestamp`).
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A body of the given chunks without a declared length (like chunked encoding).
struct Chunked(std::collections::VecDeque<axum::body::Bytes>);

impl hyper::body::Body for Chunked {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

fn fields(v: &Value) -> Vec<String> {
    v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {v}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}

fn assert_error_body(v: &Value, kind: &str) {
    assert_eq!(v["error"], kind, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    for e in v["errors"].as_array().unwrap() {
        assert!(e["field"].is_string() && e["reason"].is_string(), "{v}");
    }
}

#[tokio::test]
async fn accepted_only_once_durable_with_the_exact_bytes() {
    let e = env("");
    // Odd spacing on purpose: the bytes are stored as sent, not re-serialised.
    let body =
        br#"{ "id": "p1",  "operations": [{"op": "write", "path": "a.txt", "content": "x\n"}] }"#;
    let (s, v) = e
        .post(
            "/v1/patches",
            "application/json; charset=utf-8",
            body.to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let q = &v["queued"][0];
    assert_eq!(
        (q["id"].as_str(), q["target"].as_str()),
        (Some("p1"), Some("default"))
    );
    let name = q["name"].as_str().unwrap();
    assert_eq!(e.pending("default"), [name]);
    assert_eq!(e.entry("default", name), body);
    assert!(e
        .ing
        .layout()
        .queue("default")
        .tmp_dir()
        .read_dir()
        .unwrap()
        .next()
        .is_none());
    assert_eq!(e.ing.counters.queued.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn duplicates_are_200_and_conflicts_409_naming_the_existing_entry() {
    let e = env("");
    let (s, v) = e.post_json(&patch("p1", "x")).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let name = v["queued"][0]["name"].clone();
    let (s, v) = e.post_json(&patch("p1", "x")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["queued"], json!([]));
    assert_eq!(v["duplicates"][0]["name"], name);
    let (s, v) = e.post_json(&patch("p1", "other")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_error_body(&v, "conflict");
    assert_eq!(v["existing"]["name"], name);
    assert_eq!(fields(&v), ["id"]);
    assert_eq!(e.pending("default").len(), 1);
}

#[tokio::test]
async fn every_bad_input_class_is_400_naming_the_field_and_queues_nothing() {
    let e = env("");
    let nested_arrays = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let nested_objects = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
    let long_id = "x".repeat(10_000);
    let op = |path: &str| json!({"operations": [{"op": "write", "path": path, "content": "x"}]});
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("malformed", b"{\"operations\": [".to_vec(), "(document)"),
        ("trailing garbage", b"{} x".to_vec(), "(document)"),
        ("200 nested arrays", nested_arrays.into_bytes(), "(document)"),
        ("200 nested objects", nested_objects.into_bytes(), "(document)"),
        ("not an object", b"42".to_vec(), "(document)"),
        ("no shape", b"{\"hello\": 1}".to_vec(), "(document)"),
        ("empty operations", b"{\"operations\": []}".to_vec(), "operations"),
        ("long id", serde_json::to_vec(&json!({"id": long_id, "operations": [{"op": "delete", "path": "a"}]})).unwrap(), "id"),
        ("dot-dot", serde_json::to_vec(&op("../etc/passwd")).unwrap(), "operations[0].path"),
        ("inner dot-dot", serde_json::to_vec(&op("a/../../b")).unwrap(), "operations[0].path"),
        ("absolute", serde_json::to_vec(&op("/etc/passwd")).unwrap(), "operations[0].path"),
        ("NUL", serde_json::to_vec(&op("a\u{0}b")).unwrap(), "operations[0].path"),
        ("empty path", serde_json::to_vec(&op("")).unwrap(), "operations[0].path"),
        ("rename escape", serde_json::to_vec(&json!({"operations": [{"op": "rename", "from": "a", "to": "../../b"}]})).unwrap(), "operations[0].to"),
        ("legacy outside legacy_root", serde_json::to_vec(&json!({"id": "w", "target": "DEV", "target_file": "/etc/passwd", "patch": {"content": "x"}})).unwrap(), "target_file"),
        ("unknown op", serde_json::to_vec(&json!({"operations": [{"op": "teleport", "path": "a"}]})).unwrap(), "operations[0].op"),
        ("unknown target", serde_json::to_vec(&json!({"target": "nowhere", "operations": [{"op": "delete", "path": "a"}]})).unwrap(), "target"),
        ("control char in id", serde_json::to_vec(&json!({"id": "a\nb", "operations": [{"op": "delete", "path": "a"}]})).unwrap(), "id"),
        // A key named twice: the last one used to win silently.
        ("duplicate id", br#"{"id": "a", "operations": [{"op": "delete", "path": "a"}], "id": "b"}"#.to_vec(), "id"),
        ("duplicate op key", br#"{"operations": [{"op": "delete", "path": "a", "path": "b"}]}"#.to_vec(), "operations[0].path"),
        ("duplicate id in an array", br#"[{"id": "a", "id": "b", "operations": [{"op": "delete", "path": "a"}]}]"#.to_vec(), "[0].id"),
    ];
    for (what, body, field) in cases {
        let (s, v) = e.post("/v1/patches", "application/json", body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {v}");
        assert!(
            v["error"] == "invalid_patch" || v["error"] == "malformed_json",
            "{what}: {v}"
        );
        assert_error_body(&v, v["error"].as_str().unwrap());
        assert!(
            fields(&v).iter().any(|f| f == field),
            "{what}: {field} not named in {v}"
        );
        // A 10,000-character id is not echoed back whole.
        assert!(v.to_string().len() < 5_000, "{what}: answer too long");
    }
    let (_, v) = e
        .post_json(&json!({"target": "nowhere", "operations": [{"op": "delete", "path": "a"}]}))
        .await;
    let m = v.to_string();
    assert!(
        m.contains("known targets") && m.contains("default (aliases: DEV)") && m.contains("web"),
        "{v}"
    );
    let (_, v) = e
        .post(
            "/v1/patches",
            "application/json",
            b"{\n  \"id\": }".to_vec(),
        )
        .await;
    assert!(
        v["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("line 2 column"),
        "{v}"
    );
    assert!(e.pending("default").is_empty() && e.pending("web").is_empty());
}

#[tokio::test]
async fn routing_by_target_and_alias() {
    let e = env("");
    let mut p = patch("to-web", "x");
    p["target"] = json!("web");
    assert_eq!(e.post_json(&p).await.0, StatusCode::ACCEPTED);
    let mut p = patch("to-dev", "x");
    p["target"] = json!("dev");
    let (s, v) = e.post_json(&p).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["queued"][0]["target"], "default");
    assert_eq!((e.pending("web").len(), e.pending("default").len()), (1, 1));
}

#[tokio::test]
async fn authentication() {
    let e = env("");
    let body = serde_json::to_vec(&patch("auth", "x")).unwrap();
    let with = |headers: &[(&str, String)]| {
        let mut b = Request::post("/v1/patches").header(header::CONTENT_TYPE, "application/json");
        for (k, v) in headers {
            b = b.header(*k, v);
        }
        b.body(Body::from(body.clone())).unwrap()
    };
    // 401: nothing, another scheme, an empty bearer.
    for h in [
        vec![],
        vec![("authorization", "Basic dTpw".to_string())],
        vec![("authorization", "Bearer ".to_string())],
    ] {
        let (s, hd, v) = e.call(with(&h)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{h:?}: {v}");
        assert_error_body(&v, "unauthorized");
        assert!(hd.contains_key(header::WWW_AUTHENTICATE));
    }
    // 401 too: a wrong token; a bad, foreign, stale or malformed signature,
    // each naming the header it is about.
    let (s, _, v) = e
        .call(with(&[("authorization", "Bearer wrong".into())]))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_error_body(&v, "unauthorized");
    let ts = now();
    for (bad, ts, field) in [
        (
            sign_v1(b"another key", ts, "POST", "/v1/patches", &body),
            ts,
            "X-Ghost-Signature",
        ),
        (
            sign_v1(KEY.as_bytes(), ts, "POST", "/v1/patches", b"another body"),
            ts,
            "X-Ghost-Signature",
        ),
        (
            sign_v1(KEY.as_bytes(), ts, "POST", "/webhook", &body),
            ts,
            "X-Ghost-Signature",
        ),
        (
            sign_v1(KEY.as_bytes(), ts - 301, "POST", "/v1/patches", &body),
            ts - 301,
            "X-Ghost-Timestamp",
        ),
        // The old body-only form on X-Ghost-Signature.
        (sign_hub(KEY.as_bytes(), &body), ts, "X-Ghost-Signature"),
        ("v1=zz".to_string(), ts, "X-Ghost-Signature"),
        ("md5=00".to_string(), ts, "X-Ghost-Signature"),
    ] {
        let (s, _, v) = e
            .call(with(&[
                ("x-ghost-signature", bad.clone()),
                ("x-ghost-timestamp", ts.to_string()),
            ]))
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{bad}: {v}");
        assert_eq!(fields(&v), [field], "{bad}: {v}");
    }
    assert!(e.pending("default").is_empty());
    // Nothing of the token is ever echoed.
    let (_, _, v) = e.call(with(&[("authorization", TOKEN.to_string())])).await;
    assert!(!v.to_string().contains(TOKEN), "{v}");
    // Either signature form is accepted on POST.
    let sig = sign_v1(KEY.as_bytes(), ts, "POST", "/v1/patches", &body);
    let (s, _, v) = e
        .call(with(&[
            ("x-ghost-signature", sig),
            ("x-ghost-timestamp", ts.to_string()),
        ]))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let (s, _, v) = e
        .call(with(&[(
            "x-hub-signature-256",
            sign_hub(KEY.as_bytes(), &body),
        )]))
        .await;
    assert_eq!(s, StatusCode::OK, "duplicate: {v}");
    // The entry holds the signed bytes.
    let name = e.pending("default")[0].clone();
    assert_eq!(e.entry("default", &name), body);
    // GET needs auth too; /healthz does not.
    let (s, _, _) = e
        .call(
            Request::get("/v1/patches/auth")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // A signature is no credential for GET, not even a valid one.
    for (h, v) in [
        ("x-hub-signature-256", sign_hub(KEY.as_bytes(), b"")),
        (
            "x-ghost-signature",
            sign_v1(KEY.as_bytes(), ts, "GET", "/v1/patches/auth", b""),
        ),
    ] {
        let (s, _, body) = e
            .call(
                Request::get("/v1/patches/auth")
                    .header(h, v)
                    .header("x-ghost-timestamp", ts.to_string())
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{h}: {body}");
        assert!(body.to_string().contains("Bearer"), "{body}");
    }
    let (s, _, v) = e
        .call(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["paused"], false);
    assert_eq!(v["version"], ghost_core::VERSION);
}

#[tokio::test]
async fn oversized_bodies_are_413_and_wrong_types_415() {
    let e = env("[bridge]\nmax_body_bytes = \"1KiB\"\nmax_patch_bytes = 600\n");
    let big = patch("big", &"x".repeat(2000));
    let (s, v) = e.post_json(&big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_error_body(&v, "too_large");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("1024 bytes (bridge.max_body_bytes)"),
        "{v}"
    );
    // A signed body is verified within bridge.max_patch_bytes (600 here),
    // whether its length is declared or not: past it, the request is not
    // authenticated.
    let bytes = serde_json::to_vec(&patch("mid", &"x".repeat(700))).unwrap();
    for declared in [true, false] {
        let ts = now();
        let body = if declared {
            Body::from(bytes.clone())
        } else {
            Body::new(Chunked(
                bytes
                    .chunks(100)
                    .map(axum::body::Bytes::copy_from_slice)
                    .collect(),
            ))
        };
        let r = Request::post("/v1/patches")
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-ghost-timestamp", ts.to_string())
            .header(
                "x-ghost-signature",
                sign_v1(KEY.as_bytes(), ts, "POST", "/v1/patches", &bytes),
            )
            .body(body)
            .unwrap();
        let (s, _, v) = e.call(r).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
        assert_eq!(fields(&v), ["X-Ghost-Signature"], "{v}");
        assert!(v.to_string().contains("bridge.max_patch_bytes"), "{v}");
    }
    // Within the body limit but over the patch limit: refused by field.
    let (s, v) = e.post_json(&patch("mid", &"x".repeat(700))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("bridge.max_patch_bytes"), "{v}");
    for ct in [
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
    ] {
        let (s, v) = e.post("/v1/patches", ct, b"{}".to_vec()).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}: {v}");
        assert_error_body(&v, "unsupported_media_type");
        assert!(
            v["message"].as_str().unwrap().contains("application/json"),
            "{v}"
        );
    }
    let r = Request::post("/v1/patches")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(e.call(r).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(e.pending("default").is_empty());
    assert!(e.ing.counters.rejected.load(Ordering::Relaxed) >= 5);
}

#[tokio::test]
async fn above_the_high_water_mark_is_429_with_retry_after() {
    let e = env("[bridge]\nhigh_water_mark = 1\nretry_after = \"7s\"\n");
    assert_eq!(e.post_json(&patch("h1", "x")).await.0, StatusCode::ACCEPTED);
    let (s, h, v) = e
        .call(req(
            "/v1/patches",
            "application/json",
            serde_json::to_vec(&patch("h2", "x")).unwrap(),
        ))
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(h.get(header::RETRY_AFTER).unwrap(), "7");
    assert_error_body(&v, "busy");
    assert_eq!(fields(&v), ["target"]);
    // A duplicate of what is queued is still answered.
    assert_eq!(e.post_json(&patch("h1", "x")).await.0, StatusCode::OK);
    assert_eq!(e.pending("default").len(), 1);
}

#[tokio::test]
async fn paused_is_503_with_retry_after_on_every_post_route() {
    let e = env("[bridge]\nretry_after = \"3s\"\n");
    let pause = e.ing.pause_file();
    ghost_core::fs::durable_write(&pause, b"{}", 0o600).unwrap();
    for route in ["/v1/patches", "/webhook", "/ingest/patch"] {
        let (s, h, v) = e
            .call(req(
                route,
                "application/json",
                serde_json::to_vec(&patch("p", "x")).unwrap(),
            ))
            .await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{route}: {v}");
        assert_eq!(h.get(header::RETRY_AFTER).unwrap(), "3");
        assert_error_body(&v, "paused");
    }
    let (_, _, v) = e
        .call(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(v["paused"], true);
    ghost_core::fs::durable_remove(&pause).unwrap();
    assert_eq!(e.post_json(&patch("p", "x")).await.0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn get_by_id_or_queue_name() {
    let e = env("");
    let (_, v) = e.get("/v1/patches/unknown").await;
    assert_error_body(&v, "not_found");
    assert_eq!(e.get("/v1/patches/unknown").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        e.get("/v1/patches/..%2F..%2Fetc").await.0,
        StatusCode::NOT_FOUND
    );

    let (_, v) = e.post_json(&patch("known/with space", "x")).await;
    let name = v["queued"][0]["name"].as_str().unwrap().to_string();
    let (s, v) = e.get("/v1/patches/known%2Fwith%20space").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "pending");
    assert_eq!(v["name"], name.as_str());
    assert_eq!(v["target"], "default");
    assert_eq!(v["summary"], Value::Null);
    assert!(v["record"].is_object(), "{v}");
    let (s, v) = e.get(&format!("/v1/patches/{name}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["id"], "known/with space");

    // An entry that reached the queue some other way (ghostctl submit) is found too.
    let other = e
        .ing
        .layout()
        .queue("web")
        .enqueue(&serde_json::to_vec(&patch("submitted", "y")).unwrap())
        .unwrap();
    let (s, v) = e.get("/v1/patches/submitted").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["name"].as_str(), v["target"].as_str()),
        (Some(other.as_str()), Some("web"))
    );
}

const TRANSCRIPT: &str = "Here is the first change:\n\n\
```json\n{\"id\": \"t1\", \"operations\": [{\"op\": \"write\", \"path\": \"one.txt\", \"content\": \"1\\n\"}]}\n```\n\n\
A truncated one:\n\n\
```json\n{\"id\": \"t-broken\", \"operations\": [\n```\n\n\
One that escapes:\n\n\
```json\n{\"id\": \"t-bad\", \"operations\": [{\"op\": \"write\", \"path\": \"../escape\", \"content\": \"x\"}]}\n```\n\n\
```rust\nfn not_a_patch() {}\n```\n\n\
```json\n{\"id\": \"t2\", \"operations\": [{\"op\": \"write\", \"path\": \"two.txt\", \"content\": \"2\\n\"}]}\n```\n";

#[tokio::test]
async fn a_transcript_queues_its_good_blocks_and_reports_the_bad_ones() {
    let e = env("");
    let (s, v) = e
        .post("/v1/patches", "text/markdown; charset=utf-8", TRANSCRIPT)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let ids: Vec<&str> = v["queued"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["t1", "t2"]);
    let rej = v["rejected"].as_array().unwrap();
    assert_eq!(rej.len(), 2, "{v}");
    assert_eq!(
        (
            rej[0]["item"].as_u64(),
            rej[0]["block"].as_u64(),
            rej[0]["line"].as_u64()
        ),
        (Some(2), Some(2), Some(9))
    );
    assert_eq!(rej[0]["error"], "extraction_failed");
    assert_eq!(
        (rej[1]["block"].as_u64(), rej[1]["line"].as_u64()),
        (Some(3), Some(15))
    );
    assert_eq!(rej[1]["error"], "invalid_patch");
    assert_eq!(rej[1]["id"], "t-bad");
    assert_eq!(rej[1]["errors"][0]["field"], "operations[0].path");
    assert!(
        fields(&v).contains(&"block 3: operations[0].path".to_string()),
        "{v}"
    );
    assert_eq!(
        e.ing.counters.extraction_failures.load(Ordering::Relaxed),
        1
    );
    assert_eq!(e.pending("default").len(), 2);

    // text/plain works the same; sending it again is all duplicates but the bad blocks.
    let (s, v) = e.post("/v1/patches", "text/plain", TRANSCRIPT).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["duplicates"].as_array().unwrap().len(), 2);

    // Nothing that is a patch: 400 no_patch.
    for text in ["just words", "```rust\nfn x() {}\n```\n", ""] {
        let (s, v) = e.post("/v1/patches", "text/plain", text).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{text:?}: {v}");
        assert_error_body(&v, "no_patch");
    }
    // Only bad blocks: 400 naming each.
    let (s, v) = e
        .post(
            "/v1/patches",
            "text/markdown",
            "```json\n{\"operations\": [\n```\n",
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_error_body(&v, "extraction_failed");
    assert_eq!(v["rejected"][0]["block"], 1);
    // Not UTF-8.
    let (s, v) = e
        .post("/v1/patches", "text/plain", vec![0xff, 0xfe, b'x'])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(e.pending("default").len(), 2);
}

#[tokio::test]
async fn arrays_are_taken_item_by_item() {
    let e = env("");
    let (s, v) = e
        .post_json(&json!([patch("a1", "x"), {"operations": []}, patch("a1", "x")]))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["queued"].as_array().unwrap().len(), 1);
    assert_eq!(v["duplicates"].as_array().unwrap().len(), 1);
    assert_eq!(v["rejected"][0]["item"], 2);
    assert_eq!(v["rejected"][0]["errors"][0]["field"], "operations");
    // Stored as JSON of the element.
    let name = v["queued"][0]["name"].as_str().unwrap();
    let stored: Value = serde_json::from_slice(&e.entry("default", name)).unwrap();
    assert_eq!(stored, patch("a1", "x"));
    // Nothing new: all duplicates → 200; a conflict among refusals → 409.
    assert_eq!(
        e.post_json(&json!([patch("a1", "x")])).await.0,
        StatusCode::OK
    );
    let (s, v) = e
        .post_json(&json!([patch("a1", "other"), {"operations": []}]))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(fields(&v).contains(&"item 1: id".to_string()), "{v}");
    let (s, v) = e.post_json(&json!([])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error_body(&v, "no_patch");
}

#[tokio::test]
async fn compatibility_routes() {
    let e = env("");
    let hook = json!({"id": "hook-1", "role": "ui_patch", "target": "DEV", "target_file": "/old/app/src/t.tsx", "patch": {"content": "export {}\n"}});
    let body = serde_json::to_vec(&hook).unwrap();
    let (s, v) = e.post("/webhook", "application/json", body.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let name = v["queued"][0]["name"].as_str().unwrap();
    assert_eq!(e.entry("default", name), body);
    // Old senders without a Content-Type are taken; a wrong one is not.
    let r = Request::post("/webhook")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::from(body.clone()))
        .unwrap();
    assert_eq!(e.call(r).await.0, StatusCode::OK);
    assert_eq!(
        e.post("/webhook", "text/html", body).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let (s, v) = e
        .post("/webhook", "application/json", b"[1]".to_vec())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    let wrapped =
        json!({"patch": patch("wrapped", "w"), "metadata": {"from": "old-router", "n": 1}});
    let (s, v) = e
        .post(
            "/ingest/patch",
            "application/json",
            serde_json::to_vec(&wrapped).unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let name = v["queued"][0]["name"].as_str().unwrap();
    let stored: Value = serde_json::from_slice(&e.entry("default", name)).unwrap();
    assert_eq!(stored, patch("wrapped", "w"), "metadata is not stored");
    for bad in [
        json!({"metadata": {}}),
        json!({"patch": "text"}),
        json!({"patch": null}),
    ] {
        let (s, v) = e
            .post(
                "/ingest/patch",
                "application/json",
                serde_json::to_vec(&bad).unwrap(),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(fields(&v), ["patch"], "{v}");
    }
    let (s, v) = e
        .post(
            "/ingest/patch",
            "application/json",
            b"{\"patch\": {\"operations\": []}}".to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(fields(&v), ["operations"]);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let e = env("");
    let (s, _, v) = e
        .call(Request::get("/nowhere").body(Body::empty()).unwrap())
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error_body(&v, "not_found");
    let r = Request::builder()
        .method(Method::DELETE)
        .uri("/healthz")
        .body(Body::empty())
        .unwrap();
    let (s, _, v) = e.call(r).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_error_body(&v, "method_not_allowed");
}

/// The port a bridge started on `127.0.0.1:0` listens on, from the heartbeat
/// it writes once bound (binding `:0` here and passing the port on would race
/// with every other socket of the machine).
async fn listening_port(root: &std::path::Path) -> u16 {
    let path = Layout::new(root).heartbeat("bridge");
    for _ in 0..200 {
        if let Ok(hb) = ghost_core::heartbeat::read(&path) {
            if let Some(addr) = hb.details["listen"].as_str() {
                return addr.parse::<std::net::SocketAddr>().unwrap().port();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the bridge never wrote its listening address");
}

/// The real server: start, answer, stop on cancel with a final heartbeat;
/// a second bridge on the same root is refused.
#[tokio::test]
async fn run_serves_until_cancelled_and_holds_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[bridge]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\nhmac_key = \"{KEY}\"\n[heartbeat]\ninterval = \"100ms\"\n"
    );
    let cfg = Config::from_toml(dir.path(), &text, "test").unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(ghost_bridge::run(cfg.clone(), shutdown.clone()));
    let port = listening_port(dir.path()).await;

    // A tiny HTTP/1.1 client (`Connection: close`: the answer ends at EOF).
    let request = |raw: String| async move {
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.write_all(raw.as_bytes()).ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).ok()?;
            Some(out)
        })
        .await
        .unwrap()
    };
    let mut health = None;
    for _ in 0..100 {
        health =
            request("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into()).await;
        if health.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = health.expect("the bridge never answered");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let body = serde_json::to_string(&patch("live", "x")).unwrap();
    let answer = request(format!(
        "POST /v1/patches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    // One bridge per root.
    let second = ghost_bridge::run(cfg, tokio_util::sync::CancellationToken::new()).await;
    match second {
        Err(ghost_bridge::BridgeError::Locked { pid, .. }) => {
            assert_eq!(pid, Some(std::process::id()))
        }
        other => panic!("{other:?}"),
    }

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("did not stop")
        .unwrap()
        .unwrap();
    let hb = ghost_core::heartbeat::read(&Layout::new(dir.path()).heartbeat("bridge")).unwrap();
    assert_eq!(hb.status, "stopped");
    assert_eq!(hb.details["counters"]["queued"], 1);
    assert_eq!(hb.details["listen"], format!("127.0.0.1:{port}"));
    assert!(
        request("GET /healthz HTTP/1.1\r\n\r\n".into())
            .await
            .is_none(),
        "still listening"
    );
}

/// Shutdown stops accepting but lets a request already in flight (here, one
/// whose body is still arriving) finish with its answer.
#[tokio::test]
async fn shutdown_finishes_requests_in_flight() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let text =
        format!("[bridge]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\nhmac_key = \"{KEY}\"\n");
    let cfg = Config::from_toml(dir.path(), &text, "test").unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(ghost_bridge::run(cfg, shutdown.clone()));
    let port = listening_port(dir.path()).await;
    let body = serde_json::to_string(&patch("slow", "x")).unwrap();
    let (half, rest) = body.split_at(body.len() / 2);
    let head = format!(
        "POST /v1/patches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{half}",
        body.len()
    );
    let mut conn = None;
    for _ in 0..100 {
        if let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            conn = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut conn = conn.expect("the bridge never listened");
    conn.write_all(head.as_bytes()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !task.is_finished(),
        "stopped before the request in flight finished"
    );
    let rest = rest.to_string();
    let answer = tokio::task::spawn_blocking(move || {
        conn.write_all(rest.as_bytes()).unwrap();
        let mut out = String::new();
        conn.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("did not stop")
        .unwrap()
        .unwrap();
    assert_eq!(
        Layout::new(dir.path())
            .queue("default")
            .list(QueueState::Pending)
            .unwrap()
            .len(),
        1
    );
}
