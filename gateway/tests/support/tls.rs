//! Separate hosts on one machine, as browsers see them in production: a CA and a server
//! certificate the test makes with the `openssl` CLI, an NSS database trusting that CA (the
//! store Chromium on Linux reads from `$HOME/.pki/nssdb`, so no certificate error is
//! ignored), and nginx serving TLS for the gateway's host and the protected app hosts.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::process::Command;

/// A CA, a server certificate for `hosts` signed by it, and a `$HOME` whose NSS database
/// trusts the CA.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    pub fn new(hosts: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(Command::new("openssl")
            .current_dir(d)
            .args(["req", "-x509"])
            .args(ec)
            .args(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"])
            .args(["-subj", "/CN=keygate test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
        run(Command::new("openssl")
            .current_dir(d)
            .arg("req")
            .args(ec)
            .args(["-keyout", "server.key", "-out", "server.csr"])
            .args(["-subj", &format!("/CN={}", hosts[0])]));
        let sans: Vec<String> = hosts.iter().map(|h| format!("DNS:{h}")).collect();
        std::fs::write(
            d.join("ext.cnf"),
            format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
                sans.join(",")
            ),
        )
        .unwrap();
        run(Command::new("openssl")
            .current_dir(d)
            .args(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem"])
            .args(["-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem"])
            .args(["-days", "2", "-extfile", "ext.cnf"]));
        let home = d.join("home");
        let nssdb = home.join(".pki/nssdb");
        std::fs::create_dir_all(&nssdb).unwrap();
        let db = format!("sql:{}", nssdb.display());
        run(Command::new("certutil").args(["-N", "-d", &db, "--empty-password"]));
        run(Command::new("certutil")
            .args(["-A", "-d", &db, "-t", "C,,", "-n", "keygate-test-ca", "-i"])
            .arg(d.join("ca.pem")));
        Self { dir, home }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

/// What nginx serves on one port: the gateway's host proxied whole, and app hosts whose
/// every path is checked by forward-auth (as ingress-nginx renders `auth-url`, with
/// `auth-signin: https://$host/.keygate/callback?tenant=…`) except the handoff path, which
/// goes to the gateway with the app host's `Host`.
pub struct Sites<'a> {
    pub gateway_host: &'a str,
    pub app_hosts: &'a [&'a str],
    pub gateway_port: u16,
    pub upstream_port: u16,
    pub tenant: &'a str,
    /// The tenant shares its session cookie with a parent domain of every app host: app
    /// hosts get no handoff route (a handoff attempt would fail) and `auth-signin` points
    /// at the gateway's sign-in page itself.
    pub shared_cookie: bool,
}

pub fn start_nginx(pki: &Pki, port: u16, sites: &Sites) -> super::nginx::Nginx {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let gw = format!("127.0.0.1:{}", sites.gateway_port);
    let tls = format!(
        "listen 127.0.0.1:{port} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};",
        pki.cert().display(),
        pki.key().display()
    );
    let t = sites.tenant;
    let up = sites.upstream_port;
    let root = super::nginx::user_directive();
    let (handoff_route, signin) = if sites.shared_cookie {
        (
            String::new(),
            format!(
                "https://{}:{port}/t/{t}/signin?rd=$scheme://$http_host$request_uri",
                sites.gateway_host
            ),
        )
    } else {
        (
            format!(
                "location = /.keygate/callback {{\n      proxy_set_header Host $http_host;\n      proxy_pass http://{gw};\n    }}"
            ),
            format!(
                "https://$http_host/.keygate/callback?tenant={t}&rd=$scheme://$http_host$request_uri"
            ),
        )
    };
    let conf = format!(
        r#"{root}
master_process off;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    {tls}
    server_name {gateway_host};
    location / {{
      proxy_set_header Host $http_host;
      proxy_pass http://{gw};
    }}
  }}
  server {{
    {tls}
    server_name {apps};
    location = /_external-auth {{
      internal;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_pass http://{gw}/forward-auth?tenant={t}&role=reader;
    }}
    {handoff_route}
    location @signin {{
      internal;
      return 302 {signin};
    }}
    location / {{
      auth_request /_external-auth;
      auth_request_set $user $upstream_http_x_auth_request_user;
      proxy_set_header X-Auth-Request-User $user;
      error_page 401 = @signin;
      proxy_pass http://127.0.0.1:{up};
    }}
  }}
}}
"#,
        gateway_host = sites.gateway_host,
        apps = sites.app_hosts.join(" "),
    );
    super::nginx::run(dir, &conf, port)
}
