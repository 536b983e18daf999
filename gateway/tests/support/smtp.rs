//! A real SMTP relay for the mail tests: aiosmtpd (`gateway/tests/peers/smtp_sink.py`, from
//! the venv `scripts/test` creates) with STARTTLS required, on a certificate for `localhost`
//! from a CA this module makes with `openssl`, and one AUTH account. Messages arrive as
//! JSON lines on the relay's stdout.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The relay's AUTH account.
pub const SMTP_USER: &str = "keygate";
/// Its password (the tests search logs for it too).
pub const SMTP_PASSWORD: &str = "relay-pass-9f3c2b7e41";

/// One message the relay accepted.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// Whether STARTTLS was in effect.
    pub tls: bool,
    /// Whether the client had authenticated.
    pub authenticated: bool,
    /// The raw message (headers and MIME parts).
    pub data: String,
    /// Subject, decoded.
    pub subject: String,
    /// The text/plain part, decoded.
    pub text: Option<String>,
    /// The text/html part, decoded.
    pub html: Option<String>,
}

/// A running relay; stopped on drop.
pub struct SmtpSink {
    pub port: u16,
    /// The CA that signed the relay's certificate, PEM.
    pub ca_pem: Vec<u8>,
    child: Child,
    received: Arc<Mutex<Vec<Received>>>,
    _dir: tempfile::TempDir,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The peers' Python: `KEYGATE_TEST_PYTHON`, else the venv `scripts/test` creates.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("KEYGATE_TEST_PYTHON") {
        return p.into();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/venv-peers/bin/python")
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (Debian `openssl`) makes the test CA");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a certificate for `localhost`/127.0.0.1 signed by it, in `dir`.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=keygate test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "relay.key",
            "-out",
            "relay.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "relay.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "relay.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

impl SmtpSink {
    /// Starts the relay; a relay that cannot start fails the test.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        make_certificates(dir.path());
        let python = python();
        assert!(
            python.exists(),
            "{} is missing: run scripts/test once (it creates the peers' venv from gateway/tests/peers/requirements.txt) or set KEYGATE_TEST_PYTHON",
            python.display()
        );
        let port = super::free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/smtp_sink.py");
        let mut child = Command::new(&python)
            .arg(script)
            .args(["--port", &port.to_string()])
            .arg("--cert")
            .arg(dir.path().join("relay.pem"))
            .arg("--key")
            .arg(dir.path().join("relay.key"))
            .args(["--user", SMTP_USER, "--password", SMTP_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SMTP relay");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().map(|l| l.unwrap_or_default());
        assert_eq!(
            first.as_deref(),
            Some("READY"),
            "the SMTP relay did not start"
        );
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mail: Received = serde_json::from_str(&line).expect("a relay line");
                sink.lock().unwrap().push(mail);
            }
        });
        Self {
            port,
            ca_pem: std::fs::read(dir.path().join("ca.pem")).unwrap(),
            child,
            received,
            _dir: dir,
        }
    }

    /// `smtp://` URL with the account, STARTTLS implied (`localhost`, as the certificate says).
    pub fn url(&self) -> String {
        format!("smtp://{SMTP_USER}:{SMTP_PASSWORD}@localhost:{}", self.port)
    }

    /// Every message received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) for a message to `to` whose subject contains `subject`.
    pub async fn wait_for(&self, to: &str, subject: &str) -> Received {
        for _ in 0..500 {
            if let Some(m) = self
                .received()
                .into_iter()
                .rev()
                .find(|m| m.rcpt_tos.iter().any(|r| r == to) && m.subject.contains(subject))
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no mail `{subject}` to {to} reached the relay");
    }
}
