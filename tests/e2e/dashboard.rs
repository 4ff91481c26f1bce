//! The dashboard end to end: the real ghost-monitor serving on a free port,
//! real HTTP clients, and a real browser (Debian's chromium driven over
//! WebDriver by fantoccini). Every action over HTTP, every way in without
//! the token refused, `/metrics` checked as Prometheus text.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::header;
use serde_json::{json, Value};

use ghost_core::alerting::EpisodeStatus;
use ghost_core::queue::{EntryRecord, QueueState, Reason};

use crate::harness::{free_port, merge_toml, wait_until, TestEnv};

const MONITOR: &str = env!("CARGO_BIN_EXE_ghost-monitor");
const DASH_TOKEN: &str = "dash-token-7d2e91";

/// A monitor with its dashboard on a free port; returns the base URL.
fn start(env: &mut TestEnv, with_env_token: bool) -> String {
    let port = free_port();
    env.write_config(&merge_toml(
        crate::harness::FAST,
        &format!(
            r#"
[monitor]
listen = "127.0.0.1:{port}"
interval = "300ms"
debounce = "50ms"
group_wait = "200ms"
disk_free_min_percent = 0.0
"#
        ),
    ));
    let mut cmd = env.cmd(MONITOR);
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(env.dir.path().join("monitor.stderr")).unwrap());
    if with_env_token {
        cmd.env("GHOST_DASHBOARD_TOKEN", DASH_TOKEN);
    } else {
        cmd.env_remove("GHOST_DASHBOARD_TOKEN");
    }
    let child = cmd.spawn().expect("spawn monitor");
    let pid = child.id();
    env.children.push(child);
    let url = format!("http://127.0.0.1:{port}");
    let c = client();
    let up = wait_until(Duration::from_secs(30), || {
        env.assert_alive_named(pid, "monitor");
        c.get(format!("{url}/healthz"))
            .send()
            .is_ok_and(|r| r.status() == 200)
    });
    assert!(up, "the dashboard never answered /healthz");
    url
}

/// A JSON request body (the tests' reqwest has no `json` feature).
trait JsonBody {
    fn json_body(self, v: &Value) -> Self;
}

impl JsonBody for reqwest::blocking::RequestBuilder {
    fn json_body(self, v: &Value) -> Self {
        self.header(header::CONTENT_TYPE, "application/json")
            .body(v.to_string())
    }
}

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// An entry of `target` put into `state` with a failure reason.
fn entry_in(env: &TestEnv, state: QueueState, id: &str) -> String {
    let name = env.enqueue_json("default", &json!({"id": id, "operations": []}));
    if state != QueueState::Pending {
        let rec = EntryRecord {
            attempts: 3,
            reason: Some(Reason {
                kind: "transient".into(),
                message: "3 attempts failed".into(),
                at: ghost_core::time::now_rfc3339(),
                hint: None,
            }),
            ..Default::default()
        };
        env.layout()
            .queue("default")
            .transition(&name, QueueState::Pending, state, &rec)
            .unwrap();
    }
    name
}

/// The CSRF token, through the API (Bearer).
fn csrf(url: &str) -> String {
    let v: Value = client()
        .get(format!("{url}/api/v1/session"))
        .bearer_auth(DASH_TOKEN)
        .send()
        .unwrap()
        .text()
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    v["csrf"].as_str().unwrap().to_string()
}

fn act(url: &str, csrf: &str, action: &str, name: &str, reason: Option<&str>) -> Response {
    client()
        .post(format!("{url}/api/v1/actions/{action}"))
        .bearer_auth(DASH_TOKEN)
        .header("X-CSRF-Token", csrf)
        .json_body(&json!({"entries": [{"target": "default", "name": name}], "reason": reason}))
        .send()
        .unwrap()
}

fn post(url: &str, csrf: &str, path: &str, body: Value) -> Response {
    client()
        .post(format!("{url}{path}"))
        .bearer_auth(DASH_TOKEN)
        .header("X-CSRF-Token", csrf)
        .json_body(&body)
        .send()
        .unwrap()
}

fn audit(env: &TestEnv) -> Vec<Value> {
    std::fs::read_to_string(ghost_core::actions::audit_path(&env.layout()))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Without the token nothing but /healthz answers; the sign-in link sets an
/// HttpOnly SameSite=Strict cookie; POSTs need the CSRF token and this
/// origin; the generated token file is 0600 and never logged.
#[test]
fn nothing_but_healthz_answers_without_the_token_and_posts_need_csrf_and_this_origin() {
    use std::os::unix::fs::PermissionsExt;
    let mut env = TestEnv::new("");
    let name = entry_in(&env, QueueState::Stuck, "auth-1");
    let url = start(&mut env, false);
    let token_path = env
        .layout()
        .secret(ghost_core::secrets::SecretKind::DashboardToken);
    let token = std::fs::read_to_string(&token_path).unwrap();
    assert_eq!(
        std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let c = client();

    assert_eq!(
        c.get(format!("{url}/healthz")).send().unwrap().status(),
        200
    );
    for path in [
        "/api/v1/overview",
        "/api/v1/entries",
        "/api/v1/alerts",
        "/metrics",
    ] {
        let r = c.get(format!("{url}{path}")).send().unwrap();
        assert_eq!(r.status(), 401, "{path} without a token");
        let r = c
            .get(format!("{url}{path}"))
            .bearer_auth("wrong")
            .send()
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong token");
        let r = c
            .get(format!("{url}{path}"))
            .bearer_auth(token.trim())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{path} with the token");
    }
    // Pages redirect to the sign-in page.
    let r = c.get(format!("{url}/")).send().unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[header::LOCATION], "/signin");
    assert_eq!(
        c.get(format!("{url}/assets/app.js"))
            .send()
            .unwrap()
            .status(),
        303
    );
    let r = c.get(format!("{url}/signin")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.text().unwrap().contains(token.trim()));
    // A wrong sign-in link and a wrong form: 401, no cookie.
    let r = c.get(format!("{url}/?token=nope")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get(header::SET_COOKIE).is_none());
    let r = c
        .post(format!("{url}/signin"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("token=nope")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    // The sign-in link: a cookie and a redirect to a clean URL.
    let r = c
        .get(format!("{url}/?token={}", token.trim()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[header::LOCATION], "/");
    let set = r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains(token.trim()), "the cookie is not the token");
    let cookie = set.split(';').next().unwrap().to_string();
    // The sign-in form gives the same cookie.
    let r = c
        .post(format!("{url}/signin"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("token={}", token.trim()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    let page = c
        .get(format!("{url}/"))
        .header(header::COOKIE, &cookie)
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().unwrap();
    let csrf = html
        .split("name=\"csrf\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let body = json!({"entries": [{"target": "default", "name": name}], "reason": "r"});
    let retry = |cookie: Option<&str>, csrf: Option<&str>, origin: Option<&str>| {
        let mut rq = c
            .post(format!("{url}/api/v1/actions/retry"))
            .json_body(&body);
        if let Some(k) = cookie {
            rq = rq.header(header::COOKIE, k);
        }
        if let Some(t) = csrf {
            rq = rq.header("X-CSRF-Token", t);
        }
        if let Some(o) = origin {
            rq = rq.header(header::ORIGIN, o);
        }
        rq.send().unwrap().status().as_u16()
    };
    assert_eq!(retry(None, Some(&csrf), None), 401, "no cookie");
    assert_eq!(
        retry(Some("ghost_dashboard=forged"), Some(&csrf), None),
        401,
        "a forged cookie"
    );
    assert_eq!(retry(Some(&cookie), None, None), 403, "no CSRF token");
    assert_eq!(
        retry(Some(&cookie), Some("0badc0de"), None),
        403,
        "a wrong CSRF token"
    );
    assert_eq!(
        retry(Some(&cookie), Some(&csrf), Some("http://evil.example")),
        403,
        "the cookie sent from another origin"
    );
    assert_eq!(
        env.state_of("default", &name),
        Some(QueueState::Stuck),
        "nothing moved"
    );
    assert!(audit(&env).is_empty(), "nothing audited");
    // This origin, the cookie and the CSRF token: done.
    let origin = url.clone();
    assert_eq!(retry(Some(&cookie), Some(&csrf), Some(&origin)), 200);
    assert_eq!(env.state_of("default", &name), Some(QueueState::Pending));

    // The token is in no log and no output.
    let mut seen = String::new();
    for e in std::fs::read_dir(env.layout().logs()).unwrap().flatten() {
        seen.push_str(&String::from_utf8_lossy(
            &std::fs::read(e.path()).unwrap_or_default(),
        ));
    }
    seen.push_str(
        &std::fs::read_to_string(env.dir.path().join("monitor.stderr")).unwrap_or_default(),
    );
    assert!(seen.contains("DASHBOARD_LISTENING"), "the start is logged");
    assert!(!seen.contains(token.trim()), "the token reached a log");
}

/// Every action over the JSON API: retry, hold, release, delete (reason
/// required), restore, a refused move, pause and resume, ack and silence;
/// each appended to the audit log as done through the dashboard.
#[test]
fn every_action_works_over_http_and_is_audited() {
    let mut env = TestEnv::new("");
    let stuck = entry_in(&env, QueueState::Stuck, "act-stuck");
    let failed = entry_in(&env, QueueState::Failed, "act-failed");
    let pending = entry_in(&env, QueueState::Pending, "act-pending");
    let url = start(&mut env, true);
    let csrf = csrf(&url);
    let c = client();

    // The stuck and failed page lists both, with their reason.
    let v: Value = c
        .get(format!("{url}/api/v1/entries?state=stuck,failed"))
        .bearer_auth(DASH_TOKEN)
        .send()
        .unwrap()
        .text()
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(v["total"], 2, "{v}");
    assert_eq!(v["entries"][0]["reason"]["message"], "3 attempts failed");
    // The patch id finds an entry.
    let v: Value = c
        .get(format!("{url}/api/v1/entries?state=all&id=act-pending"))
        .bearer_auth(DASH_TOKEN)
        .send()
        .unwrap()
        .text()
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(v["entries"][0]["name"], pending.as_str(), "{v}");
    // Its detail: the patch and the record.
    let v: Value = c
        .get(format!("{url}/api/v1/entries/default/{stuck}"))
        .bearer_auth(DASH_TOKEN)
        .send()
        .unwrap()
        .text()
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert!(v["patch"].as_str().unwrap().contains("act-stuck"), "{v}");
    assert_eq!(v["record"]["attempts"], 3);

    // ack: the stuck entry fires patch_stuck once the monitor has cycled.
    let fp = format!("patch_stuck:default:{stuck}");
    assert!(
        wait_until(Duration::from_secs(20), || {
            ghost_core::alerting::read_book(&env.layout()).is_ok_and(|b| {
                b.episodes
                    .get(&fp)
                    .is_some_and(|e| e.status == EpisodeStatus::Firing)
            })
        }),
        "patch_stuck never fired"
    );
    let r = post(
        &url,
        &csrf,
        "/api/v1/alerts/ack",
        json!({"matcher": "nothing:*"}),
    );
    assert_eq!(r.status(), 422, "nothing firing matches");
    let r = post(&url, &csrf, "/api/v1/alerts/ack", json!({"matcher": fp}));
    assert_eq!(r.status(), 200);
    assert!(
        wait_until(Duration::from_secs(20), || {
            ghost_core::alerting::read_book(&env.layout()).is_ok_and(|b| {
                b.episodes.get(&fp).is_some_and(|e| {
                    e.acked_by
                        .as_deref()
                        .is_some_and(|a| a.contains("dashboard"))
                })
            })
        }),
        "the ack never reached the alert book"
    );
    // silence
    let r = post(
        &url,
        &csrf,
        "/api/v1/alerts/silence",
        json!({"matcher": "queue_depth_high:*", "for": "0s", "reason": "x"}),
    );
    assert_eq!(r.status(), 422, "a zero duration is refused");
    let r = post(
        &url,
        &csrf,
        "/api/v1/alerts/silence",
        json!({"matcher": "queue_depth_high:*", "for": "2h", "reason": "load test"}),
    );
    assert_eq!(r.status(), 200);
    assert!(
        wait_until(Duration::from_secs(20), || {
            ghost_core::alerting::read_book(&env.layout())
                .is_ok_and(|b| b.silences.iter().any(|s| s.matcher == "queue_depth_high:*"))
        }),
        "the silence never reached the alert book"
    );

    // The moves.
    let r = act(&url, &csrf, "retry", &pending, None);
    assert_eq!(r.status(), 422, "retry of a pending entry is refused");
    assert!(r.text().unwrap().contains("retry moves entries from"));
    assert_eq!(
        act(&url, &csrf, "retry", &stuck, Some("fixed the disk")).status(),
        200
    );
    assert_eq!(env.state_of("default", &stuck), Some(QueueState::Pending));
    let rec = env
        .layout()
        .queue("default")
        .read_record(QueueState::Pending, &stuck)
        .unwrap();
    assert_eq!(rec.attempts, 0);
    assert_eq!(
        rec.operator.last().unwrap().reason.as_deref(),
        Some("fixed the disk")
    );
    assert_eq!(
        act(&url, &csrf, "hold", &pending, Some("wait")).status(),
        200
    );
    assert_eq!(env.state_of("default", &pending), Some(QueueState::Held));
    assert_eq!(
        act(&url, &csrf, "release", &pending, Some("go")).status(),
        200
    );
    assert_eq!(env.state_of("default", &pending), Some(QueueState::Pending));
    assert_eq!(
        act(&url, &csrf, "delete", &failed, None).status(),
        422,
        "delete needs a reason"
    );
    assert_eq!(
        act(&url, &csrf, "delete", &failed, Some(" ")).status(),
        422,
        "a blank reason is none"
    );
    assert_eq!(env.state_of("default", &failed), Some(QueueState::Failed));
    assert_eq!(
        act(&url, &csrf, "delete", &failed, Some("obsolete")).status(),
        200
    );
    assert_eq!(env.state_of("default", &failed), Some(QueueState::Trash));
    assert_eq!(
        act(&url, &csrf, "restore", &failed, Some("needed after all")).status(),
        200
    );
    assert_eq!(env.state_of("default", &failed), Some(QueueState::Pending));
    // A bulk request acts on exactly the entries it names.
    let r = client()
        .post(format!("{url}/api/v1/actions/hold"))
        .bearer_auth(DASH_TOKEN)
        .header("X-CSRF-Token", &csrf)
        .json_body(&json!({"entries": [{"target": "default", "name": stuck}, {"target": "default", "name": failed}], "reason": "bulk"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(env.state_of("default", &stuck), Some(QueueState::Held));
    assert_eq!(env.state_of("default", &failed), Some(QueueState::Held));
    assert_eq!(
        env.state_of("default", &pending),
        Some(QueueState::Pending),
        "not named, not moved"
    );

    // Pause and resume.
    assert_eq!(
        post(&url, &csrf, "/api/v1/pause", json!({"reason": ""})).status(),
        422
    );
    assert_eq!(
        post(
            &url,
            &csrf,
            "/api/v1/pause",
            json!({"reason": "maintenance"})
        )
        .status(),
        200
    );
    assert!(env.layout().pause_file().exists());
    let v: Value = c
        .get(format!("{url}/api/v1/logs"))
        .bearer_auth(DASH_TOKEN)
        .send()
        .unwrap()
        .text()
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(v["pause"]["paused"], true, "{v}");
    assert_eq!(post(&url, &csrf, "/api/v1/resume", json!({})).status(), 200);
    assert!(!env.layout().pause_file().exists());

    let lines = audit(&env);
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "ack", "silence", "retry", "hold", "release", "delete", "restore", "hold", "hold",
            "pause", "resume"
        ]
    );
    assert!(lines
        .iter()
        .all(|l| l["via"] == "dashboard" && l["by"].as_str().unwrap().contains("127.0.0.1")));
    assert_eq!(lines[5]["reason"], "obsolete");
}

/// `/metrics` is Prometheus text (OpenMetrics): every sample belongs to a
/// declared family, the queue gauges and the duration histograms are there.
#[test]
fn metrics_are_prometheus_text_with_the_queue_gauges_and_histograms() {
    let mut env = TestEnv::new("");
    entry_in(&env, QueueState::Stuck, "m-1");
    // One applied patch, so its summary feeds the histograms.
    env.enqueue_json(
        "default",
        &json!({"id": "m-2", "operations": [{"op": "write", "path": "m.txt", "content": "x\n"}]}),
    );
    env.drain();
    let url = start(&mut env, true);
    let c = client();
    let mut text = String::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            text = c
                .get(format!("{url}/metrics"))
                .bearer_auth(DASH_TOKEN)
                .header(header::ACCEPT, OPENMETRICS)
                .send()
                .unwrap()
                .text()
                .unwrap();
            text.contains("ghost_queue_depth{target=\"default\",state=\"stuck\"} 1")
                && text.contains("ghost_patches_total{target=\"default\",outcome=\"applied\"} 1")
        }),
        "{text}"
    );
    check_exposition(&text);
    // (Families without a sample yet, such as restarts without a watchdog,
    // are left out of the exposition.)
    for family in [
        "ghost_queue_depth",
        "ghost_queue_oldest_age_seconds",
        "ghost_patches",
        "ghost_apply_duration_seconds",
        "ghost_alerts_firing",
        "ghost_intake_paused",
        "ghost_heartbeat_ok",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
    assert!(
        text.contains("ghost_apply_duration_seconds_count{target=\"default\"} 1"),
        "{text}"
    );

    // Without asking for OpenMetrics (curl, promtool): the Prometheus text
    // format, which the real promtool parses and lints clean.
    let r = c
        .get(format!("{url}/metrics"))
        .bearer_auth(DASH_TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        r.headers()
    );
    let classic = r.text().unwrap();
    assert!(
        classic.contains("# TYPE ghost_patches_total counter") && !classic.contains("# EOF"),
        "{classic}"
    );
    promtool_check(&classic);
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0";

/// `promtool check metrics` on `text`: it must parse and lint clean (exit 0,
/// nothing said). In CI a missing promtool fails; elsewhere the check is
/// skipped, saying why.
fn promtool_check(text: &str) {
    use std::io::Write;
    let Some(promtool) = crate::watchdog::need("promtool", "Debian package `prometheus`") else {
        return;
    };
    let mut p = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {:?} {said}\n{text}",
        out.status
    );
}

/// An id in the API is resolved by the rule every verb uses: an exact
/// queue name or patch id, else an unambiguous prefix or suffix of 4+
/// characters; several matches are 409 with the candidates, none 404.
#[test]
fn an_id_is_resolved_exactly_then_by_an_unambiguous_prefix_or_suffix() {
    let mut env = TestEnv::new("");
    let one = entry_in(&env, QueueState::Stuck, "resolve-alpha-1");
    let two = entry_in(&env, QueueState::Pending, "resolve-alpha-2");
    let url = start(&mut env, true);
    let c = client();
    let get = |id: &str, state: &str| -> (u16, Value) {
        let r = c
            .get(format!("{url}/api/v1/entries"))
            .query(&[("id", id), ("state", state)])
            .bearer_auth(DASH_TOKEN)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, serde_json::from_str(&r.text().unwrap()).unwrap())
    };
    let names = |v: &Value| -> Vec<String> {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    // Exact: a patch id, a queue name.
    let (s, v) = get("resolve-alpha-1", "all");
    assert_eq!((s, names(&v)), (200, vec![one.clone()]), "{v}");
    let (s, v) = get(&two, "all");
    assert_eq!((s, names(&v)), (200, vec![two.clone()]), "{v}");
    // A unique suffix of a queue name, and of a patch id.
    let (s, v) = get(&one[one.len() - 8..], "all");
    assert_eq!((s, names(&v)), (200, vec![one.clone()]), "{v}");
    let (s, v) = get("alpha-2", "all");
    assert_eq!((s, names(&v)), (200, vec![two.clone()]), "{v}");
    // The other filters still apply to the entry the id means.
    let (s, v) = get("resolve-alpha-1", "pending");
    assert_eq!((s, v["total"].as_u64()), (200, Some(0)), "{v}");
    // A prefix of both patch ids: ambiguous, with the candidates.
    let (s, v) = get("resolve-alpha", "all");
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"], "ambiguous");
    let mut cand: Vec<String> = v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    cand.sort();
    let mut both = vec![one.clone(), two.clone()];
    both.sort();
    assert_eq!(cand, both, "{v}");
    assert!(v["message"].as_str().unwrap().contains(&one), "{v}");
    // Nothing matches; and a fragment inside a name is not a match, nor a
    // key shorter than 4 characters.
    for k in ["no-such-patch", &one[10..20], "res"] {
        let (s, v) = get(k, "all");
        assert_eq!(s, 404, "{k}: {v}");
        assert_eq!(v["error"], "not_found", "{v}");
    }
}

/// The OpenMetrics text rules a scraper relies on: `# HELP/TYPE/UNIT` lines,
/// samples `name{label="v",…} value` of a declared family, one `# EOF` last.
fn check_exposition(text: &str) {
    let sample = regex::Regex::new(
        r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$"#,
    )
    .unwrap();
    let mut families: Vec<(String, String)> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "ends with # EOF");
    for l in &lines[..lines.len() - 1] {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (n, t) = rest.split_once(' ').expect("# TYPE name type");
            assert!(
                [
                    "counter",
                    "gauge",
                    "histogram",
                    "summary",
                    "info",
                    "stateset",
                    "unknown"
                ]
                .contains(&t),
                "{l}"
            );
            families.push((n.to_string(), t.to_string()));
            continue;
        }
        if l.starts_with("# HELP ") || l.starts_with("# UNIT ") {
            continue;
        }
        let m = sample
            .captures(l)
            .unwrap_or_else(|| panic!("not a sample line: {l:?}"));
        let name = &m[1];
        let ok = families.iter().any(|(f, t)| {
            name == f
                || (t == "counter"
                    && (name == format!("{f}_total") || name == format!("{f}_created")))
                || (t == "histogram"
                    && ["_bucket", "_sum", "_count", "_created"]
                        .iter()
                        .any(|s| name == format!("{f}{s}")))
        });
        assert!(ok, "sample {name} of no declared family");
    }
}

/// A WebDriver session on Debian's chromium, or why there is none: outside
/// CI a missing browser skips the test (printed); in CI it fails.
/// The chromedriver process, killed when the test ends however it ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Option<(Driver, u16)> {
    let have = |p: &str| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !(have("chromedriver") && have("chromium")) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have chromium and chromium-driver (.ci/run installs them)"
        );
        eprintln!("skipped: chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)");
        return None;
    }
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromedriver");
    let up = wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let driver = Driver(child);
    assert!(up, "chromedriver never listened");
    Some((driver, port))
}

/// A person signs in with the link, sees the stuck patch, clicks retry,
/// gives a reason and confirms; the patch leaves the stuck list and is in
/// pending/. The screenshot goes to `target/dashboard.png`; with
/// `GHOST_UPDATE_SCREENSHOT=1` it replaces the README's `docs/img/dashboard.png`
/// (a test run never changes the source tree otherwise).
#[test]
fn a_browser_signs_in_and_retries_a_stuck_patch() {
    let Some((driver, port)) = chromedriver() else {
        return;
    };
    let mut env = TestEnv::new("");
    let stuck = entry_in(&env, QueueState::Stuck, "browser-stuck-1");
    entry_in(&env, QueueState::Failed, "browser-failed-1");
    entry_in(&env, QueueState::Stuck, "browser-stuck-2");
    entry_in(&env, QueueState::Failed, "browser-failed-2");
    entry_in(&env, QueueState::Pending, "browser-pending-1");
    let url = start(&mut env, true);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let shot = if std::env::var_os("GHOST_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        root.join("docs/img/dashboard.png")
    } else {
        root.join("target/dashboard.png")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async {
        use fantoccini::{ClientBuilder, Locator};
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]}),
        );
        let b = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        let r: Result<(), fantoccini::error::CmdError> = async {
            // Not signed in: the sign-in page.
            b.goto(&format!("{url}/#/stuck")).await?;
            b.wait().for_element(Locator::Id("token")).await?;
            // The sign-in link, as the watchdog's banner points to.
            b.goto(&format!("{url}/?token={DASH_TOKEN}")).await?;
            assert_eq!(b.current_url().await?.as_str(), format!("{url}/"));
            b.goto(&format!("{url}/#/stuck")).await?;
            let row = format!("tr.entry[data-name=\"{stuck}\"]");
            b.wait().for_element(Locator::Css(&row)).await?;
            b.find(Locator::Css(&format!("{row} button.act-retry"))).await?.click().await?;
            b.wait().for_element(Locator::Css("#confirm:not([hidden])")).await?;
            // No reason: refused in the page.
            b.find(Locator::Id("confirm-ok")).await?.click().await?;
            let err = b.find(Locator::Id("confirm-error")).await?.text().await?;
            assert!(err.contains("reason"), "{err}");
            b.find(Locator::Id("confirm-reason")).await?.send_keys("the disk is fixed").await?;
            b.find(Locator::Id("confirm-ok")).await?.click().await?;
            Ok(())
        }
        .await;
        if let Err(e) = r {
            let _ = b.close().await;
            return Err(format!("{e}"));
        }
        // It leaves the stuck list and reaches pending/.
        let gone = {
            let mut ok = false;
            for _ in 0..100 {
                if b.find(Locator::Css(&format!("tr.entry[data-name=\"{stuck}\"]"))).await.is_err() {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            ok
        };
        // The overview for the screenshot, once its charts are drawn.
        let _ = b.goto(&format!("{url}/#/stuck")).await;
        let _ = b.wait().for_element(Locator::Css("#stuck-table")).await;
        let png = b.screenshot().await.map_err(|e| e.to_string());
        let _ = b.close().await;
        Ok((gone, png?))
    });
    drop(driver);
    let (gone, png) = result.unwrap();
    assert!(gone, "the retried patch is still in the stuck list");
    assert_eq!(env.state_of("default", &stuck), Some(QueueState::Pending));
    let rec = env
        .layout()
        .queue("default")
        .read_record(QueueState::Pending, &stuck)
        .unwrap();
    assert_eq!(
        rec.operator.last().unwrap().reason.as_deref(),
        Some("the disk is fixed")
    );
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    std::fs::write(&shot, &png).unwrap();
}
