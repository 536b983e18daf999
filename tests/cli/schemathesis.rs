//! Hostile input against the running binary: schemathesis (PyPI, pinned in
//! `gateway/tests/peers/requirements.txt`) generates requests from `/openapi.json` of a real
//! `keygate dev` — schema-valid and schema-violating bodies, odd path segments, missing and
//! wrong content types and credentials — and fails on any 5xx, any status, content type,
//! header or body the document does not describe, and any schema-violating request that is
//! accepted. Its settings (seed, examples per operation) are in `schemathesis.toml` beside
//! this file; docs/security.md ("Hostile input") lists what it found.

use super::{repo_root, start_dev_capturing};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin@demo.local";
const FIRST_PASSWORD: &str = "first-cobalt-lantern-19";
const PASSWORD: &str = "second-ochre-harbour-23";

/// Operations that end the caller's session: run after the others, so the others are
/// tried with a live token rather than a revoked one.
const SESSION_ENDING: &str = "/logout(-all)?$";

/// The peers' Python: `KEYGATE_TEST_PYTHON`, else the venv `scripts/test` creates.
fn python() -> PathBuf {
    let python = std::env::var_os("KEYGATE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/venv-peers/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run scripts/test once (it creates the peers' venv from gateway/tests/peers/requirements.txt) or set KEYGATE_TEST_PYTHON",
        python.display()
    );
    python
}

/// The bootstrap administrator's access token (its first sign-in sets the password it must
/// change); retried while the background bootstrap has not created the account yet.
fn admin_token(base: &str) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = http
                .post(format!("{base}/t/demo/login"))
                .json(&serde_json::json!({
                    "email": ADMIN, "password": FIRST_PASSWORD, "new_password": PASSWORD,
                }))
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                let body: serde_json::Value = r.json().await.unwrap();
                return body["access_token"].as_str().unwrap().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "the bootstrap admin cannot sign in: {} {}",
                r.status(),
                r.text().await.unwrap()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

/// Runs `schemathesis run` with `filter` against `base`; returns (success, its output).
fn schemathesis(base: &str, token: &str, filter: &[&str]) -> (bool, String) {
    let work = tempfile::tempdir().unwrap();
    let mut child = Command::new(python())
        .args(["-m", "schemathesis.cli", "--no-color", "--config-file"])
        .arg(repo_root().join("tests/cli/schemathesis.toml"))
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(filter)
        .env("KEYGATE_SCHEMATHESIS_TOKEN", token)
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the peers' Python runs schemathesis");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // The settings bound the run to well under a minute; this only stops a hung one.
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("schemathesis ran past 240 s:\n{}", out.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = format!("{}{}", out.join().unwrap(), err.join().unwrap());
    (status.success(), output)
}

#[test]
fn schemathesis_finds_no_server_error_and_nothing_the_document_does_not_describe() {
    let data = tempfile::tempdir().unwrap();
    let (_dev, base, lines) = start_dev_capturing(
        &repo_root().join("examples/dev"),
        data.path(),
        &[
            ("KEYGATE_BOOTSTRAP_TENANT", "demo"),
            ("KEYGATE_BOOTSTRAP_EMAIL", ADMIN),
            ("KEYGATE_BOOTSTRAP_PASSWORD", FIRST_PASSWORD),
            ("KEYGATE_LOG", "debug"),
        ],
    );
    let token = admin_token(&base);
    let mut failures = Vec::new();
    for filter in [
        ["--exclude-path-regex", SESSION_ENDING],
        ["--include-path-regex", SESSION_ENDING],
    ] {
        let (ok, output) = schemathesis(&base, &token, &filter);
        if !ok {
            failures.push(output);
            continue;
        }
        assert!(
            output.contains(" passed"),
            "schemathesis ran no test case:\n{output}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A thousand hostile requests later, the log (at DEBUG) still carries none of the
    // credentials they were sent with.
    let logged = lines.lock().unwrap().join("\n");
    assert!(logged.contains("DEBUG"), "the log runs at DEBUG");
    for (what, secret) in [
        ("access token", token.as_str()),
        ("first password", FIRST_PASSWORD),
        ("password", PASSWORD),
    ] {
        assert!(!logged.contains(secret), "the {what} reached the log");
    }
}
