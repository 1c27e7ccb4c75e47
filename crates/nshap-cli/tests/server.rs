//! `nshap serve` driven over HTTP as a client would: the real server process on a loopback port,
//! a temporary data directory, the shipped digits MLP.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn asset(model: &str, file: &str) -> PathBuf {
    repo().join("assets").join(model).join(file)
}

fn token(data: &Path, name: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_nshap"))
        .args(["serve", "token", "create", "--name", name, "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert!(t.starts_with("nshap_"), "{t}");
    t
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data: &Path, extra: &[&str]) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.with_extension("log"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_nshap"))
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(extra)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server printed no address");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a plain kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Wait for the process to exit; its exit status.
    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(start.elapsed() < limit, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build()
}

/// One request; (status, body). Transport errors panic.
fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> (u16, Vec<u8>) {
    try_call(agent, method, url, token, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

fn try_call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> Result<(u16, Vec<u8>), String> {
    let mut req = agent.request(method, url);
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let res = match body {
        Some((ct, b)) => req.set("Content-Type", ct).send_bytes(b),
        None => req.call(),
    };
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    let status = resp.status();
    let mut buf = Vec::new();
    resp.into_reader()
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    Ok((status, buf))
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// A JSON request; (status, parsed body).
fn jcall(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let text = body.map(|b| b.to_string());
    let (status, bytes) = call(
        &agent(),
        method,
        &s.url(path),
        token,
        text.as_deref().map(|t| ("application/json", t.as_bytes())),
    );
    (status, json_of(&bytes))
}

/// A multipart/form-data body: (name, is_file, bytes) parts.
fn multipart(parts: &[(&str, bool, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "nshap-test-boundary-4f1c2a";
    let mut body = Vec::new();
    for (name, file, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        if *file {
            body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{name}.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            );
        } else {
            body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            );
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn upload(s: &Server, token: &str, path: &str, parts: &[(&str, bool, &[u8])]) -> (u16, Value) {
    let (ct, body) = multipart(parts);
    let (status, bytes) = call(
        &agent(),
        "POST",
        &s.url(path),
        Some(token),
        Some((&ct, &body)),
    );
    (status, json_of(&bytes))
}

/// Upload a shipped model and its eval set; (model id, dataset id).
fn upload_asset(s: &Server, token: &str, model: &str) -> (String, String) {
    let spec = std::fs::read(asset(model, "model.json")).unwrap();
    let weights = std::fs::read(asset(model, "weights.safetensors")).unwrap();
    let data = std::fs::read(asset(model, "eval.safetensors")).unwrap();
    let (st, m) = upload(
        s,
        token,
        "/v1/models",
        &[("spec", true, &spec), ("weights", true, &weights)],
    );
    assert!(st == 201 || st == 200, "{st} {m}");
    let (st, d) = upload(s, token, "/v1/datasets", &[("data", true, &data)]);
    assert!(st == 201 || st == 200, "{st} {d}");
    (
        m["id"].as_str().unwrap().to_string(),
        d["id"].as_str().unwrap().to_string(),
    )
}

fn submit(s: &Server, token: &str, body: Value) -> String {
    let (st, job) = jcall(s, "POST", "/v1/jobs", Some(token), Some(&body));
    assert_eq!(st, 201, "{job}");
    assert_eq!(job["state"], "queued");
    job["id"].as_str().unwrap().to_string()
}

/// Poll a job until `done(job)`, at most `limit`.
fn wait_job(
    s: &Server,
    token: &str,
    id: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let (st, job) = jcall(s, "GET", &format!("/v1/jobs/{id}"), Some(token), None);
        assert_eq!(st, 200, "{job}");
        if done(&job) {
            return job;
        }
        assert!(
            start.elapsed() < limit,
            "job {id} still {} after {limit:?}: {job}",
            job["state"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn state_is(states: &'static [&'static str]) -> impl Fn(&Value) -> bool {
    move |j| states.contains(&j["state"].as_str().unwrap_or(""))
}

fn evaluations(job: &Value) -> u64 {
    job["progress"]["evaluations"].as_u64().unwrap_or(0)
}

/// Processes whose command line mentions `needle` (a job directory).
fn processes_mentioning(needle: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .count()
}

fn wait_no_process(needle: &str) {
    let start = Instant::now();
    while processes_mentioning(needle) > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "a job process outlived its server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_error(status: u16, body: &Value, want_status: u16, field: Option<&str>) {
    assert_eq!(status, want_status, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "no error message: {body}"
    );
    if let Some(f) = field {
        assert_eq!(body["field"], f, "{body}");
    }
}

#[test]
fn job_lifecycle_results_events_cancel_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let alice = token(&data, "alice");
    let s = Server::start(&data, &["--max-jobs", "1"]);

    let (st, h) = jcall(&s, "GET", "/healthz", None, None);
    assert_eq!((st, h["status"].as_str()), (200, Some("ok")));
    let (model, dataset) = upload_asset(&s, &alice, "digits-mlp");
    // Content-addressed: the same upload again is the same model.
    let (model2, dataset2) = upload_asset(&s, &alice, "digits-mlp");
    assert_eq!((&model, &dataset), (&model2, &dataset2));
    let (st, m) = jcall(
        &s,
        "GET",
        &format!("/v1/models/{model}"),
        Some(&alice),
        None,
    );
    assert_eq!(st, 200, "{m}");

    let id = submit(
        &s,
        &alice,
        json!({"model": model, "dataset": dataset, "players": ["relu2"], "method": "tmab",
               "metric": "accuracy", "top_k": 5, "budget": 3000, "seed": 1, "backend": "cpu"}),
    );
    // Follow it as server-sent events until the end.
    let resp = agent()
        .get(&s.url(&format!("/v1/jobs/{id}/events")))
        .set("Authorization", &format!("Bearer {alice}"))
        .call()
        .unwrap();
    assert_eq!(resp.content_type(), "text/event-stream");
    let mut last = Value::Null;
    let mut events = 0;
    let mut ended = false;
    let mut event = String::new();
    for line in BufReader::new(resp.into_reader()).lines() {
        let line = line.unwrap();
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_string();
            if event == "end" {
                ended = true;
                break;
            }
        } else if let Some(d) = line.strip_prefix("data: ") {
            if event == "progress" {
                last = json_of(d.as_bytes());
                events += 1;
            }
        }
    }
    assert!(ended && events >= 1, "{events} events");
    assert_eq!(last["state"], "done", "{last}");

    let job = wait_job(&s, &alice, &id, Duration::from_secs(5), state_is(&["done"]));
    assert!(evaluations(&job) > 0, "{job}");
    assert!(job["running_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(job["error"], Value::Null);
    let a = agent();
    let (st, csv) = call(
        &a,
        "GET",
        &s.url(&format!("/v1/jobs/{id}/values.csv")),
        Some(&alice),
        None,
    );
    assert_eq!(st, 200);
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.starts_with("node,index,value,stderr"), "{csv}");
    assert_eq!(csv.lines().count(), 17, "16 relu2 players and a header");
    let (st, report) = call(
        &a,
        "GET",
        &s.url(&format!("/v1/jobs/{id}/report.json")),
        Some(&alice),
        None,
    );
    assert_eq!(st, 200);
    // 3000 evaluations do not resolve TMAB's top-5: `nshap run` exits 3, and the job is still
    // done, with the verdict in report.json and values.csv.
    let report = json_of(&report);
    assert_eq!(report["top_k_resolved"], false, "{report}");
    assert!(csv.contains(",unresolved\n"), "{csv}");
    let (st, svg) = call(
        &a,
        "GET",
        &s.url(&format!("/v1/jobs/{id}/ablation.svg")),
        Some(&alice),
        None,
    );
    assert_eq!(st, 200);
    assert!(String::from_utf8_lossy(&svg).contains("<svg"));

    let (st, list) = jcall(&s, "GET", "/v1/jobs", Some(&alice), None);
    assert_eq!(st, 200);
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(list["jobs"][0]["id"], id.as_str());
    let (st, doc) = jcall(&s, "GET", "/v1/openapi.json", Some(&alice), None);
    assert_eq!(st, 200);
    assert!(doc["paths"]["/v1/jobs/{id}/events"].is_object());

    // Cancel a long job while it runs: the process goes, the job says cancelled.
    let long = submit(
        &s,
        &alice,
        json!({"model": model, "dataset": dataset, "players": "relu2", "method": "permutation",
               "budget": 1_000_000_000u64, "examples_per_eval": 64, "backend": "cpu"}),
    );
    wait_job(&s, &alice, &long, Duration::from_secs(60), |j| {
        evaluations(j) > 0
    });
    let (st, j) = jcall(
        &s,
        "DELETE",
        &format!("/v1/jobs/{long}"),
        Some(&alice),
        None,
    );
    assert_eq!((st, j["state"].as_str()), (200, Some("cancelled")), "{j}");
    wait_no_process(&format!("jobs/{long}"));
    let (st, j) = jcall(&s, "GET", &format!("/v1/jobs/{long}"), Some(&alice), None);
    assert_eq!((st, j["state"].as_str()), (200, Some("cancelled")), "{j}");
    let (st, e) = jcall(
        &s,
        "GET",
        &format!("/v1/jobs/{long}/values.csv"),
        Some(&alice),
        None,
    );
    assert_error(st, &e, 409, None);
    let (st, e) = jcall(&s, "DELETE", &format!("/v1/jobs/{id}"), Some(&alice), None);
    assert_error(st, &e, 409, None);
    // Cancelling a queued job: it never runs.
    let q1 = submit(
        &s,
        &alice,
        json!({"model": model, "dataset": dataset, "players": ["relu2"], "method": "permutation",
               "budget": 1_000_000_000u64, "backend": "cpu"}),
    );
    let q2 = submit(
        &s,
        &alice,
        json!({"model": model, "dataset": dataset, "players": ["relu2"], "method": "loo", "backend": "cpu"}),
    );
    wait_job(
        &s,
        &alice,
        &q1,
        Duration::from_secs(30),
        state_is(&["running"]),
    );
    let (st, j) = jcall(&s, "DELETE", &format!("/v1/jobs/{q2}"), Some(&alice), None);
    assert_eq!((st, j["state"].as_str()), (200, Some("cancelled")), "{j}");
    let (st, j) = jcall(&s, "DELETE", &format!("/v1/jobs/{q1}"), Some(&alice), None);
    assert_eq!((st, j["state"].as_str()), (200, Some("cancelled")), "{j}");
    wait_no_process(&format!("jobs/{q1}"));
    let j = wait_job(
        &s,
        &alice,
        &q2,
        Duration::from_secs(5),
        state_is(&["cancelled"]),
    );
    assert_eq!(j["attempts"], 0, "{j}");

    let (st, metrics) = call(&a, "GET", &s.url("/metrics"), Some(&alice), None);
    assert_eq!(st, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    for needle in [
        "nshap_queue_depth 0",
        "nshap_jobs{state=\"done\"} 1",
        "nshap_jobs{state=\"cancelled\"} 3",
        "nshap_evaluations_per_second ",
        "nshap_gpu_adapter_info{adapter=",
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }

    // The all-values and certified estimators run as jobs too; their interval columns say
    // what they are.
    for (method, column) in [("regression", "ci95_low"), ("certified", "cs95_low")] {
        let job = submit(
            &s,
            &alice,
            json!({"model": model, "dataset": dataset, "players": ["relu2"], "method": method,
                   "top_k": 3, "budget": 4000, "seed": 2, "backend": "cpu"}),
        );
        let j = wait_job(
            &s,
            &alice,
            &job,
            Duration::from_secs(120),
            state_is(&["done", "failed"]),
        );
        assert_eq!(j["state"], "done", "{method}: {j}");
        let resp = agent()
            .get(&s.url(&format!("/v1/jobs/{job}/values.csv")))
            .set("Authorization", &format!("Bearer {alice}"))
            .call()
            .unwrap();
        let csv = resp.into_string().unwrap();
        assert!(
            csv.lines().next().unwrap().contains(column),
            "{method}: {csv}"
        );
    }
}

#[test]
fn auth_isolation_validation_and_bad_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let alice = token(&data, "alice");
    let bob = token(&data, "bob");
    let s = Server::start(&data, &["--max-jobs", "2", "--max-upload-bytes", "300000"]);

    // Missing, invalid and malformed tokens.
    let (st, e) = jcall(&s, "GET", "/v1/jobs", None, None);
    assert_error(st, &e, 401, Some("authorization"));
    let (st, e) = jcall(&s, "GET", "/v1/jobs", Some("nshap_not-a-token"), None);
    assert_error(st, &e, 401, Some("authorization"));
    let (st, _) = call(&agent(), "GET", &s.url("/metrics"), None, None);
    assert_eq!(st, 401);
    let (st, _) = call(&agent(), "GET", &s.url("/healthz"), None, None);
    assert_eq!(st, 200);

    let (model, dataset) = upload_asset(&s, &alice, "digits-mlp");
    let job = submit(
        &s,
        &alice,
        json!({"model": model, "dataset": dataset, "players": ["relu2"], "method": "loo", "backend": "cpu"}),
    );

    // Bob sees none of it: 404 everywhere, as if it did not exist.
    for (method, path) in [
        ("GET", format!("/v1/jobs/{job}")),
        ("DELETE", format!("/v1/jobs/{job}")),
        ("GET", format!("/v1/jobs/{job}/values.csv")),
        ("GET", format!("/v1/jobs/{job}/report.json")),
        ("GET", format!("/v1/jobs/{job}/ablation.svg")),
        ("GET", format!("/v1/jobs/{job}/events")),
        ("GET", format!("/v1/models/{model}")),
        ("GET", format!("/v1/datasets/{dataset}")),
    ] {
        let (st, e) = jcall(&s, method, &path, Some(&bob), None);
        assert_error(st, &e, 404, None);
    }
    let (st, e) = jcall(
        &s,
        "POST",
        "/v1/jobs",
        Some(&bob),
        Some(&json!({"model": model, "dataset": dataset, "players": ["relu2"]})),
    );
    assert_error(st, &e, 404, Some("model"));
    let (st, list) = jcall(&s, "GET", "/v1/jobs", Some(&bob), None);
    assert_eq!(st, 200);
    assert_eq!(list["jobs"].as_array().unwrap().len(), 0);

    // Malformed JSON and invalid fields.
    let (st, bytes) = call(
        &agent(),
        "POST",
        &s.url("/v1/jobs"),
        Some(&alice),
        Some(("application/json", b"{\"model\": ")),
    );
    let e = json_of(&bytes);
    assert_error(st, &e, 400, Some("body"));
    assert!(
        e["error"].as_str().unwrap().contains("malformed JSON"),
        "{e}"
    );
    let (st, e) = jcall(&s, "POST", "/v1/jobs", Some(&alice), Some(&json!([1, 2])));
    assert_error(st, &e, 400, Some("body"));
    let base = json!({"model": model, "dataset": dataset, "players": ["relu2"]});
    for (field, value) in [
        ("method", json!("simulated_annealing")),
        ("metric", json!("f1")),
        ("top_k", json!(0)),
        ("budget", json!("lots")),
        ("seed", json!(-1)),
        ("backend", json!("tpu")),
        ("examples_per_eval", json!(0)),
        ("players", json!(["--evil"])),
        ("players", json!([])),
        ("colour", json!("blue")),
    ] {
        let mut body = base.clone();
        body[field] = value;
        let (st, e) = jcall(&s, "POST", "/v1/jobs", Some(&alice), Some(&body));
        assert_error(st, &e, 422, Some(field));
    }
    let mut body = base.clone();
    body.as_object_mut().unwrap().remove("players");
    let (st, e) = jcall(&s, "POST", "/v1/jobs", Some(&alice), Some(&body));
    assert_error(st, &e, 422, Some("players"));
    let (st, e) = jcall(&s, "GET", "/v1/jobs?state=sleeping", Some(&alice), None);
    assert_error(st, &e, 422, Some("state"));

    // Uploads: too large, not multipart, missing parts, unknown parts.
    let big = vec![7u8; 400_000];
    let (st, e) = upload(&s, &alice, "/v1/datasets", &[("data", true, &big)]);
    assert_error(st, &e, 413, Some("body"));
    let (st, bytes) = call(
        &agent(),
        "POST",
        &s.url("/v1/models"),
        Some(&alice),
        Some(("application/json", b"{}")),
    );
    assert_error(st, &json_of(&bytes), 400, Some("body"));
    let spec = std::fs::read(asset("digits-mlp", "model.json")).unwrap();
    let (st, e) = upload(&s, &alice, "/v1/models", &[("spec", true, &spec)]);
    assert_error(st, &e, 422, Some("weights"));
    let (st, e) = upload(
        &s,
        &alice,
        "/v1/models",
        &[("arch", false, b"vgg16"), ("weights", true, b"x")],
    );
    assert_error(st, &e, 422, Some("arch"));
    let (st, e) = upload(
        &s,
        &alice,
        "/v1/models",
        &[("spec", true, b"{not json"), ("weights", true, b"x")],
    );
    assert_error(st, &e, 422, Some("spec"));
    let (st, e) = upload(&s, &alice, "/v1/datasets", &[("pictures", true, b"x")]);
    assert_error(st, &e, 400, Some("pictures"));

    // Corrupt safetensors: stored as bytes, the job fails with the loader's message.
    let (st, m) = upload(
        &s,
        &alice,
        "/v1/models",
        &[
            ("spec", true, &spec),
            ("weights", true, b"this is not a safetensors file"),
        ],
    );
    assert_eq!(st, 201, "{m}");
    let bad_model = m["id"].as_str().unwrap().to_string();
    let bad = submit(
        &s,
        &alice,
        json!({"model": bad_model, "dataset": dataset, "players": ["relu2"], "backend": "cpu"}),
    );
    let (st, d) = upload(
        &s,
        &alice,
        "/v1/datasets",
        &[("data", true, b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")],
    );
    assert_eq!(st, 201, "{d}");
    let bad_data = submit(
        &s,
        &alice,
        json!({"model": model, "dataset": d["id"], "players": ["relu2"], "backend": "cpu"}),
    );
    let no_node = submit(
        &s,
        &alice,
        json!({"model": model, "dataset": dataset, "players": ["relu9"], "backend": "cpu"}),
    );
    for id in [&bad, &bad_data, &no_node] {
        let j = wait_job(
            &s,
            &alice,
            id,
            Duration::from_secs(60),
            state_is(&["failed", "done"]),
        );
        assert_eq!(j["state"], "failed", "{j}");
        let err = j["error"].as_str().unwrap();
        assert!(!err.is_empty() && !err.contains('\n'), "{err}");
        assert!(
            !err.contains(data.to_str().unwrap()),
            "server paths leak: {err}"
        );
        eprintln!("job failed as expected: {err}");
    }
    // The loader's message, naming the uploaded file by its role and digest.
    let error_of = |id: &str| {
        let j = wait_job(
            &s,
            &alice,
            id,
            Duration::from_secs(1),
            state_is(&["failed"]),
        );
        j["error"].as_str().unwrap().to_string()
    };
    let e = error_of(&bad);
    assert!(
        e.starts_with("weights ") && e.contains("not a valid safetensors file"),
        "{e}"
    );
    let e = error_of(&bad_data);
    assert!(
        e.starts_with("data ") && e.contains("not a valid safetensors file"),
        "{e}"
    );
    let j = wait_job(
        &s,
        &alice,
        &no_node,
        Duration::from_secs(1),
        state_is(&["failed"]),
    );
    assert!(j["error"].as_str().unwrap().contains("relu9"), "{j}");

    // The server is still up and the good job finished.
    let (st, _) = call(&agent(), "GET", &s.url("/healthz"), None, None);
    assert_eq!(st, 200);
    wait_job(
        &s,
        &alice,
        &job,
        Duration::from_secs(60),
        state_is(&["done"]),
    );
}

/// Budget of the restart test's job: a few seconds, so that it is caught mid-way twice (the
/// run checkpoints every 0.5 s under the server).
const RESTART_BUDGET: u64 = 600_000;

#[test]
fn sigkill_and_sigterm_mid_job_then_restart_gives_the_uninterrupted_values() {
    let dir = tempfile::tempdir().unwrap();
    // The uninterrupted result, from `nshap run` directly (alongside the server's run).
    let whole = dir.path().join("whole");
    let reference = Command::new(env!("CARGO_BIN_EXE_nshap"))
        .arg("run")
        .arg("--model")
        .arg(asset("digits-mlp", "model.json"))
        .arg("--weights")
        .arg(asset("digits-mlp", "weights.safetensors"))
        .arg("--data")
        .arg(asset("digits-mlp", "eval.safetensors"))
        .args(["--players", "relu2", "--method", "permutation", "--budget"])
        .arg(RESTART_BUDGET.to_string())
        .args([
            "--examples-per-eval",
            "64",
            "--seed",
            "5",
            "--backend",
            "cpu",
            "--out",
        ])
        .arg(&whole)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let data = dir.path().join("data");
    let alice = token(&data, "alice");
    let mut s = Server::start(&data, &[]);
    let (model, dataset) = upload_asset(&s, &alice, "digits-mlp");
    let id = submit(
        &s,
        &alice,
        json!({"model": model, "dataset": dataset, "players": ["relu2"], "method": "permutation",
               "budget": RESTART_BUDGET, "examples_per_eval": 64, "seed": 5, "backend": "cpu"}),
    );
    let job_dir = format!("jobs/{id}");
    // A few checkpoints in, kill the server without warning.
    let j = wait_job(&s, &alice, &id, Duration::from_secs(60), |j| {
        evaluations(j) >= RESTART_BUDGET / 20
    });
    assert!(
        evaluations(&j) < RESTART_BUDGET,
        "finished before the kill; raise the budget"
    );
    s.signal(libc::SIGKILL);
    s.wait_exit(Duration::from_secs(10));
    // Its child dies with it (PR_SET_PDEATHSIG): nothing keeps writing into the job directory.
    wait_no_process(&job_dir);
    drop(s);

    // Restart: the job resumes from its checkpoint. Then stop it gracefully mid-way.
    let mut s = Server::start(&data, &[]);
    let before = evaluations(&j);
    let j = wait_job(&s, &alice, &id, Duration::from_secs(60), |j| {
        j["state"] == "running" && evaluations(j) > before + RESTART_BUDGET / 20
    });
    assert!(
        evaluations(&j) < RESTART_BUDGET,
        "finished before SIGTERM; raise the budget"
    );
    s.signal(libc::SIGTERM);
    let status = s.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM: {status:?}");
    wait_no_process(&job_dir);
    drop(s);

    // Third start: it finishes, with the values an uninterrupted run gives.
    let s = Server::start(&data, &[]);
    let j = wait_job(
        &s,
        &alice,
        &id,
        Duration::from_secs(90),
        state_is(&["done", "failed"]),
    );
    assert_eq!(j["state"], "done", "{j}");
    assert_eq!(j["attempts"], 3, "{j}");
    let (st, csv) = call(
        &agent(),
        "GET",
        &s.url(&format!("/v1/jobs/{id}/values.csv")),
        Some(&alice),
        None,
    );
    assert_eq!(st, 200);
    let o = reference.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let expected = std::fs::read_to_string(whole.join("values.csv")).unwrap();
    assert_eq!(String::from_utf8(csv).unwrap(), expected);
}

#[test]
fn load_test_no_failed_request_no_lost_job() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let alice = token(&data, "alice");
    let s = Server::start(&data, &["--max-jobs", "2"]);
    let (model, dataset) = upload_asset(&s, &alice, "digits-mlp");
    let first = submit(
        &s,
        &alice,
        json!({"model": model, "dataset": dataset, "players": ["relu2"], "method": "loo", "backend": "cpu"}),
    );
    const THREADS: usize = 8;
    const PER_THREAD: usize = 40;
    let started = Instant::now();
    let results: Vec<(Vec<Duration>, usize, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (s, alice, model, dataset, first) = (&s, &alice, &model, &dataset, &first);
                scope.spawn(move || {
                    let a = agent();
                    let mut lat = Vec::new();
                    let mut failures = 0;
                    let mut submitted = Vec::new();
                    for i in 0..PER_THREAD {
                        let t0 = Instant::now();
                        let r = match i % 8 {
                            0 => {
                                let body = json!({"model": model, "dataset": dataset, "players": ["relu2"],
                                                  "method": "loo", "seed": t * 100 + i, "backend": "cpu"})
                                    .to_string();
                                try_call(&a, "POST", &s.url("/v1/jobs"), Some(alice), Some(("application/json", body.as_bytes())))
                                    .map(|(st, b)| {
                                        if st == 201 {
                                            submitted.push(json_of(&b)["id"].as_str().unwrap().to_string());
                                        }
                                        st
                                    })
                            }
                            1 | 2 => try_call(&a, "GET", &s.url("/v1/jobs?limit=20"), Some(alice), None).map(|r| r.0),
                            3 => try_call(&a, "GET", &s.url("/metrics"), Some(alice), None).map(|r| r.0),
                            _ => {
                                let id = submitted.last().unwrap_or(first);
                                try_call(&a, "GET", &s.url(&format!("/v1/jobs/{id}")), Some(alice), None).map(|r| r.0)
                            }
                        };
                        lat.push(t0.elapsed());
                        match r {
                            Ok(st) if (200..300).contains(&st) => {}
                            other => {
                                eprintln!("failed request: {other:?}");
                                failures += 1;
                            }
                        }
                    }
                    (lat, failures, submitted)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let duration = started.elapsed();
    let mut lat: Vec<Duration> = results.iter().flat_map(|r| r.0.clone()).collect();
    lat.sort();
    let failures: usize = results.iter().map(|r| r.1).sum();
    let mut ids: Vec<String> = results.iter().flat_map(|r| r.2.clone()).collect();
    ids.push(first.clone());
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "load test: {} requests from {THREADS} threads in {:.2} s ({:.0} req/s), {failures} failed, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} jobs submitted",
        lat.len(),
        duration.as_secs_f64(),
        lat.len() as f64 / duration.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
        ids.len(),
    );
    assert_eq!(failures, 0);
    assert_eq!(ids.len(), 1 + THREADS * PER_THREAD.div_ceil(8));
    // No lost job: every submission is listed and finishes.
    let (st, list) = jcall(&s, "GET", "/v1/jobs?limit=1000", Some(&alice), None);
    assert_eq!(st, 200);
    let listed: std::collections::HashSet<&str> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    for id in &ids {
        assert!(listed.contains(id.as_str()), "job {id} lost");
    }
    let drain = Instant::now();
    for id in &ids {
        let j = wait_job(
            &s,
            &alice,
            id,
            Duration::from_secs(120),
            state_is(&["done", "failed", "cancelled"]),
        );
        assert_eq!(j["state"], "done", "{j}");
    }
    println!(
        "load test: all {} jobs done {:.1} s after the last request",
        ids.len(),
        drain.elapsed().as_secs_f64()
    );
}
