//! Typed configuration from an optional YAML file with `KEYGATE_*` environment overrides,
//! validated once at start-up. Secrets come from the environment, `*_FILE` paths (mounted
//! Secrets) or the config file — never from command-line flags, which leak into `ps`.

use crate::crypto::envelope::MasterKeys;
use crate::crypto::password::{HashParams, HashPool};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Seconds requests in flight may take to finish after SIGTERM: the chart's default grace
/// period (30 s) less its preStop delay (5 s) less a margin for the process to exit.
pub const DEFAULT_SHUTDOWN_DRAIN_SECONDS: usize = 20;

mod identity;
pub use identity::{BootstrapAdmin, Smtp};

/// A configuration problem, phrased as the field, what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem}. {fix}")]
pub struct ConfigError {
    /// The environment variable or file key at fault.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
    /// What the user should do next.
    pub fix: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// A string that must never be printed (database URLs carry passwords).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for handing to the client library that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Log output shape: `human` for terminals, `json` for log collectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Coloured, one event a line.
    Human,
    /// One JSON object a line.
    Json,
}

/// The keys a config file may hold; unknown keys are rejected so typos surface at start-up.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Base URL people and proxies reach the gateway on; issuers are `{public_url}/t/{tenant}`.
    pub public_url: Option<String>,
    /// Gateway listen address.
    pub listen: Option<String>,
    /// Operator metrics/health listen address.
    pub operator_listen: Option<String>,
    /// `postgres://…` or `sqlite:…`.
    pub database_url: Option<String>,
    /// `redis://…`; without it revocations and rate limits stay inside one process.
    pub redis_url: Option<String>,
    /// `id:base64[,id:base64…]`: the first encrypts, all decrypt.
    pub master_keys: Option<String>,
    /// `human` or `json`.
    pub log_format: Option<LogFormat>,
    /// A tracing filter such as `info,keygate=debug`.
    pub log: Option<String>,
    /// argon2id cost parameters.
    pub password_hashing: Option<HashParams>,
    /// `smtp://user:pass@host:587` or `smtps://…`.
    pub smtp_url: Option<String>,
    /// Sender address of keygate's emails.
    pub smtp_from: Option<String>,
    /// Comma-separated CIDRs of proxies whose forwarded headers are believed.
    pub trusted_proxies: Option<String>,
    /// Listen address of the gRPC ext_authz service, or `off`.
    pub ext_authz_listen: Option<String>,
    /// A request header the proxy sets to a route's requirements, for gRPC checks whose
    /// route has no `context_extensions` (off unless set).
    pub ext_authz_requirements_header: Option<String>,
    /// Requirements of gRPC checks by request host, when neither of the above names any.
    pub ext_authz_host_requirements: Option<std::collections::BTreeMap<String, String>>,
}

/// Looks up one environment variable; injectable so tests never touch the process environment.
pub type EnvLookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where configuration values come from: the environment and an optional file.
pub struct Sources {
    env: EnvLookup,
    file: FileConfig,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

impl Sources {
    /// The process environment plus the file named by `config_path` (or `KEYGATE_CONFIG`).
    pub fn from_process(config_path: Option<&Path>) -> Result<Self, ConfigError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let path = config_path
            .map(Path::to_path_buf)
            .or_else(|| env("KEYGATE_CONFIG").map(PathBuf::from));
        Self::new(Box::new(env), path.as_deref())
    }

    /// Explicit sources, for tests and embedding.
    pub fn new(env: EnvLookup, config_path: Option<&Path>) -> Result<Self, ConfigError> {
        let file = match config_path {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new(
                        "KEYGATE_CONFIG",
                        format!("cannot read {}: {e}", path.display()),
                        "Point --config / KEYGATE_CONFIG at a readable YAML file, or leave it unset",
                    )
                })?;
                serde_saphyr::from_str(&text).map_err(|e| {
                    ConfigError::new(
                        "KEYGATE_CONFIG",
                        format!("{} is not a valid keygate config: {e}", path.display()),
                        "Fix the file; allowed keys are public_url, listen, operator_listen, database_url, redis_url, master_keys, log_format, log, password_hashing, smtp_url, smtp_from, trusted_proxies, ext_authz_listen, ext_authz_requirements_header, ext_authz_host_requirements",
                    )
                })?
            }
        };
        Ok(Self { env, file })
    }

    fn env(&self, key: &str) -> Option<String> {
        (self.env)(key)
    }

    /// A plain setting: environment first, then the file.
    fn plain(&self, env_key: &str, file_value: &Option<String>) -> Option<String> {
        self.env(env_key).or_else(|| file_value.clone())
    }

    /// A secret setting: `KEY`, then the file named by `KEY_FILE`, then the config file.
    fn secret(
        &self,
        env_key: &str,
        file_value: &Option<String>,
    ) -> Result<Option<Secret>, ConfigError> {
        if let Some(v) = self.env(env_key) {
            return Ok(Some(Secret::new(v)));
        }
        let file_key = format!("{env_key}_FILE");
        if let Some(path) = self.env(&file_key) {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::new(
                    file_key.clone(),
                    format!("cannot read {path}: {e}"),
                    "Mount the Secret at that path or unset the variable",
                )
            })?;
            return Ok(Some(Secret::new(text.trim().to_owned())));
        }
        Ok(file_value.clone().map(Secret::new))
    }

    fn addr(
        &self,
        env_key: &str,
        file_value: &Option<String>,
        default: &str,
    ) -> Result<SocketAddr, ConfigError> {
        let raw = self
            .plain(env_key, file_value)
            .unwrap_or_else(|| default.to_owned());
        raw.parse().map_err(|_| {
            ConfigError::new(
                env_key,
                format!("`{raw}` is not a socket address"),
                format!("Use host:port, e.g. {default}"),
            )
        })
    }

    /// The database URL (all a migration needs); `default` applies when none is set.
    pub fn database_url(&self, default: Option<&str>) -> Result<Secret, ConfigError> {
        let database_url = self
            .secret("KEYGATE_DATABASE_URL", &self.file.database_url)?
            .or_else(|| default.map(Secret::new))
            .ok_or_else(|| {
                ConfigError::new(
                    "KEYGATE_DATABASE_URL",
                    "not set",
                    "Set it (or KEYGATE_DATABASE_URL_FILE) to postgres://user:password@host:5432/keygate; for a local trial run `keygate dev` instead",
                )
            })?;
        let db = database_url.expose();
        if !(db.starts_with("postgres://")
            || db.starts_with("postgresql://")
            || db.starts_with("sqlite:"))
        {
            return Err(ConfigError::new(
                "KEYGATE_DATABASE_URL",
                "must start with postgres://, postgresql:// or sqlite:",
                "Use postgres://user:password@host:5432/keygate (or sqlite:path/to/file.db for a single-process trial)",
            ));
        }
        Ok(database_url)
    }

    /// Log format and filter.
    pub fn logging(&self) -> Result<(LogFormat, String), ConfigError> {
        let log_format = match self.env("KEYGATE_LOG_FORMAT") {
            Some(v) => match v.as_str() {
                "json" => LogFormat::Json,
                "human" => LogFormat::Human,
                other => {
                    return Err(ConfigError::new(
                        "KEYGATE_LOG_FORMAT",
                        format!("`{other}` is not a log format"),
                        "Use `human` or `json`",
                    ));
                }
            },
            None => self.file.log_format.unwrap_or(LogFormat::Human),
        };
        let filter = self
            .plain("KEYGATE_LOG", &self.file.log)
            .unwrap_or_else(|| "info".to_owned());
        Ok((log_format, filter))
    }

    /// Common settings every long-running subcommand uses; `database_url_default` applies
    /// when none is set.
    pub fn common(&self, database_url_default: Option<&str>) -> Result<CommonConfig, ConfigError> {
        self.common_with_defaults(database_url_default, None)
    }

    /// [`common`](Self::common) with a master-key default too (`keygate dev` generates one);
    /// values the user set always win over the defaults.
    pub fn common_with_defaults(
        &self,
        database_url_default: Option<&str>,
        master_keys_default: Option<&str>,
    ) -> Result<CommonConfig, ConfigError> {
        let database_url = self.database_url(database_url_default)?;
        let master_keys = self
            .secret("KEYGATE_MASTER_KEYS", &self.file.master_keys)?
            .or_else(|| master_keys_default.map(Secret::new))
            .ok_or_else(|| {
                ConfigError::new(
                    "KEYGATE_MASTER_KEYS",
                    "not set; keygate encrypts signing keys and other secrets at rest with it",
                    "Set it (or KEYGATE_MASTER_KEYS_FILE) to `k1:<32 random bytes in base64>`, e.g. KEYGATE_MASTER_KEYS=k1:$(head -c32 /dev/urandom | base64)",
                )
            })?;
        let master_keys = MasterKeys::parse(master_keys.expose()).map_err(|e| {
            ConfigError::new(
                "KEYGATE_MASTER_KEYS",
                e.to_string(),
                "Write `id:base64` entries separated by commas; the first one encrypts",
            )
        })?;
        let (log_format, log_filter) = self.logging()?;
        Ok(CommonConfig {
            database_url,
            master_keys,
            log_format,
            log_filter,
        })
    }

    /// Gateway settings; `public_url_default` applies when none is set (dev mode only).
    pub fn gateway(
        &self,
        public_url_default: Option<&str>,
        listen_default: &str,
    ) -> Result<GatewayConfig, ConfigError> {
        let listen = self.addr("KEYGATE_LISTEN", &self.file.listen, listen_default)?;
        let public_url = self
            .plain("KEYGATE_PUBLIC_URL", &self.file.public_url)
            .or_else(|| public_url_default.map(str::to_owned))
            .ok_or_else(|| {
                ConfigError::new(
                    "KEYGATE_PUBLIC_URL",
                    "not set; token issuers and sign-in links are built from it",
                    "Set it to the URL people reach the gateway on, e.g. https://auth.example.com",
                )
            })?;
        let public_url = validate_public_url(&public_url)?;
        let redis_url = self.secret("KEYGATE_REDIS_URL", &self.file.redis_url)?;
        if let Some(r) = &redis_url
            && !(r.expose().starts_with("redis://") || r.expose().starts_with("rediss://"))
        {
            return Err(ConfigError::new(
                "KEYGATE_REDIS_URL",
                "must start with redis:// or rediss://",
                "Use redis://host:6379 (or leave it unset for a single replica)",
            ));
        }
        let password_hashing = self.file.password_hashing.unwrap_or_default();
        password_hashing.validate().map_err(|p| {
            ConfigError::new(
                "password_hashing",
                p,
                "Raise memory_kib, iterations or parallelism",
            )
        })?;
        Ok(GatewayConfig {
            listen,
            public_url,
            redis_url,
            password_hashing,
            hash_pool: self.hash_pool()?,
            shutdown_drain: Duration::from_secs(
                u64::try_from(self.count(
                    "KEYGATE_SHUTDOWN_DRAIN_SECONDS",
                    DEFAULT_SHUTDOWN_DRAIN_SECONDS,
                    1..=3600,
                )?)
                .unwrap_or(u64::MAX),
            ),
            smtp: self.smtp()?,
            trusted_proxies: self.trusted_proxies()?,
            breached_passwords_file: self.breached_passwords_file()?,
            bootstrap: self.bootstrap_admin()?,
        })
    }

    /// The gRPC ext_authz service's settings: `KEYGATE_EXT_AUTHZ_LISTEN` (an address, or
    /// `off`; `listen_default` when unset), `KEYGATE_EXT_AUTHZ_REQUIREMENTS_HEADER`, and the
    /// file's `ext_authz_host_requirements` (checked by the gateway at start-up).
    pub fn ext_authz(&self, listen_default: &str) -> Result<ExtAuthzConfig, ConfigError> {
        let off = self
            .plain("KEYGATE_EXT_AUTHZ_LISTEN", &self.file.ext_authz_listen)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("off"));
        let listen = if off {
            None
        } else {
            Some(self.addr(
                "KEYGATE_EXT_AUTHZ_LISTEN",
                &self.file.ext_authz_listen,
                listen_default,
            )?)
        };
        let requirements_header = self
            .plain(
                "KEYGATE_EXT_AUTHZ_REQUIREMENTS_HEADER",
                &self.file.ext_authz_requirements_header,
            )
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty());
        if let Some(h) = &requirements_header
            && !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ConfigError::new(
                "KEYGATE_EXT_AUTHZ_REQUIREMENTS_HEADER",
                format!("`{h}` is not a header name"),
                "Use a header name such as x-keygate-requirements, or leave it unset",
            ));
        }
        Ok(ExtAuthzConfig {
            listen,
            requirements_header,
            host_requirements: self
                .file
                .ext_authz_host_requirements
                .clone()
                .unwrap_or_default(),
        })
    }

    /// `KEYGATE_PASSWORD_HASH_THREADS` (default: the cores) and `KEYGATE_PASSWORD_HASH_QUEUE`
    /// (default: 64 per thread).
    fn hash_pool(&self) -> Result<HashPool, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = self.count("KEYGATE_PASSWORD_HASH_THREADS", cores, 1..=256)?;
        let queue = self.count(
            "KEYGATE_PASSWORD_HASH_QUEUE",
            threads * HashPool::QUEUE_PER_THREAD,
            0..=100_000,
        )?;
        Ok(HashPool { threads, queue })
    }

    /// A whole number from the environment within `range`, or `default` when unset.
    fn count(
        &self,
        env_key: &str,
        default: usize,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<usize, ConfigError> {
        let Some(raw) = self.env(env_key) else {
            return Ok(default);
        };
        match raw.trim().parse::<usize>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(ConfigError::new(
                env_key,
                format!(
                    "`{raw}` is not a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
                format!("Leave it unset for the default ({default})"),
            )),
        }
    }

    /// `KEYGATE_TRUSTED_PROXIES`: CIDRs (or single addresses) of the ingress proxies whose
    /// `X-Forwarded-*` / `X-Real-IP` headers forward-auth and rate limits believe.
    fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        let raw = self
            .plain("KEYGATE_TRUSTED_PROXIES", &self.file.trusted_proxies)
            .unwrap_or_default();
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| {
                item.parse::<ipnet::IpNet>()
                    .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ConfigError::new(
                            "KEYGATE_TRUSTED_PROXIES",
                            format!("`{item}` is not a CIDR or IP address"),
                            "Use comma-separated CIDRs of your ingress controllers, e.g. 10.244.0.0/16,fd00::/8",
                        )
                    })
            })
            .collect()
    }

    /// The Redis URL, if any (`KEYGATE_REDIS_URL` or `_FILE`): the operator pushes API-key
    /// revocations to the gateways through it.
    pub fn redis_url(&self) -> Result<Option<Secret>, ConfigError> {
        self.secret("KEYGATE_REDIS_URL", &self.file.redis_url)
    }

    /// Operator settings.
    pub fn operator(&self, listen_default: &str) -> Result<OperatorConfig, ConfigError> {
        let public_url = self
            .plain("KEYGATE_PUBLIC_URL", &self.file.public_url)
            .ok_or_else(|| {
                ConfigError::new(
                    "KEYGATE_PUBLIC_URL",
                    "not set; tenant status publishes issuer and JWKS URLs built from it",
                    "Set it to the gateway's public URL, e.g. https://auth.example.com",
                )
            })?;
        Ok(OperatorConfig {
            public_url: validate_public_url(&public_url)?,
            data_dir: self
                .env("KEYGATE_DATA_DIR")
                .map_or_else(|| PathBuf::from(".keygate"), PathBuf::from),
            listen: self.addr(
                "KEYGATE_OPERATOR_LISTEN",
                &self.file.operator_listen,
                listen_default,
            )?,
            lease_name: self
                .env("KEYGATE_LEASE_NAME")
                .unwrap_or_else(|| "keygate-operator".into()),
            pod_name: self.env("POD_NAME"),
            pod_namespace: self.env("POD_NAMESPACE"),
            watch_namespaces: watch_namespaces(
                self.env("KEYGATE_WATCH_NAMESPACES")
                    .as_deref()
                    .unwrap_or(""),
            )?,
        })
    }
}

/// `KEYGATE_WATCH_NAMESPACES`: a comma-separated list of namespaces (DNS-1123 labels); unset
/// or blank means all. An empty item (`a,,b`, a trailing comma) is refused rather than read
/// as "all", and a repeated name counts once.
fn watch_namespaces(raw: &str) -> Result<Vec<String>, ConfigError> {
    const FIELD: &str = "KEYGATE_WATCH_NAMESPACES";
    if raw.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut out: Vec<String> = Vec::new();
    for (position, item) in raw.split(',').map(str::trim).enumerate() {
        if item.is_empty() {
            return Err(ConfigError::new(
                FIELD,
                format!("item {} of `{raw}` is empty", position + 1),
                "List namespaces separated by single commas, e.g. team-a,team-b; leave it unset to watch all namespaces",
            ));
        }
        if !is_dns_label(item) {
            return Err(ConfigError::new(
                FIELD,
                format!(
                    "`{item}` is not a namespace name (DNS-1123 label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)"
                ),
                "List namespaces separated by commas, e.g. team-a,team-b; leave it unset to watch all namespaces",
            ));
        }
        if !out.iter().any(|ns| ns == item) {
            out.push(item.to_owned());
        }
    }
    Ok(out)
}

/// A DNS-1123 label, what Kubernetes requires of a namespace name.
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (1..=63).contains(&bytes.len())
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
}

fn validate_public_url(raw: &str) -> Result<String, ConfigError> {
    let trimmed = raw.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['?', '#', ' ']) => Ok(trimmed.to_owned()),
        _ => Err(ConfigError::new(
            "KEYGATE_PUBLIC_URL",
            format!("`{raw}` is not an http(s) URL without query or fragment"),
            "Use e.g. https://auth.example.com or https://example.com/auth",
        )),
    }
}

/// Settings every subcommand shares.
#[derive(Clone, Debug)]
pub struct CommonConfig {
    /// Where the system of record lives.
    pub database_url: Secret,
    /// Keys that encrypt secrets at rest.
    pub master_keys: MasterKeys,
    /// Log output shape.
    pub log_format: LogFormat,
    /// Tracing filter directive.
    pub log_filter: String,
}

/// Settings of the gateway.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Base URL without a trailing slash.
    pub public_url: String,
    /// Shared cache and revocation fan-out; `None` keeps both in-process (one replica only).
    pub redis_url: Option<Secret>,
    /// argon2id parameters for new password hashes.
    pub password_hashing: HashParams,
    /// Hashing threads and the queue in front of them (`KEYGATE_PASSWORD_HASH_THREADS`,
    /// `KEYGATE_PASSWORD_HASH_QUEUE`).
    pub hash_pool: HashPool,
    /// How long requests in flight may finish after SIGTERM before their connections are
    /// closed (`KEYGATE_SHUTDOWN_DRAIN_SECONDS`); keep it below the pod's grace period
    /// minus its preStop delay.
    pub shutdown_drain: Duration,
    /// Outgoing mail; `None` logs emails instead of sending them.
    pub smtp: Option<Smtp>,
    /// Proxies whose forwarded headers are believed (`KEYGATE_TRUSTED_PROXIES`); empty: none.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// A replacement breached-password list (`KEYGATE_BREACHED_PASSWORDS_FILE`); `None`
    /// keeps the shipped one.
    pub breached_passwords_file: Option<PathBuf>,
    /// The first admin to create, if configured.
    pub bootstrap: Option<BootstrapAdmin>,
}

/// Settings of the gateway's gRPC ext_authz service (`envoy.service.auth.v3.Authorization`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtAuthzConfig {
    /// Where it listens; `None` when turned off.
    pub listen: Option<SocketAddr>,
    /// A request header carrying a route's requirements when its check has no
    /// `context_extensions` (the proxy must set it, replacing any client-sent copy).
    pub requirements_header: Option<String>,
    /// Requirements by request host (lower case, `:port` when not the default), used when
    /// neither `context_extensions` nor the header names any.
    pub host_requirements: std::collections::BTreeMap<String, String>,
}

/// Settings of the operator.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// The gateway's base URL without a trailing slash, for issuer and JWKS URLs in status.
    pub public_url: String,
    /// Where the manifest-folder source writes its Secrets and `status.yaml`
    /// (`KEYGATE_DATA_DIR`, default `.keygate`).
    pub data_dir: PathBuf,
    /// Listen address of /metrics, /healthz, /readyz.
    pub listen: SocketAddr,
    /// Name of the leader-election Lease.
    pub lease_name: String,
    /// This replica's identity in the Lease (the pod name).
    pub pod_name: Option<String>,
    /// Namespace the Lease lives in.
    pub pod_namespace: Option<String>,
    /// Namespaces to watch; empty means all.
    pub watch_namespaces: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn sources(vars: &[(&str, &str)]) -> Sources {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Sources::new(Box::new(move |k| map.get(k).cloned()), None).unwrap()
    }

    fn key() -> String {
        MasterKeys::generate_spec("k1").unwrap()
    }

    #[test]
    fn missing_master_key_names_the_variable_and_the_fix() {
        let err = sources(&[("KEYGATE_DATABASE_URL", "postgres://db/keygate")])
            .common(None)
            .unwrap_err();
        assert_eq!(err.field, "KEYGATE_MASTER_KEYS");
        assert!(err.to_string().contains("head -c32 /dev/urandom"));
    }

    #[test]
    fn a_master_key_default_applies_only_when_none_is_set() {
        let dev = key();
        let s = sources(&[("KEYGATE_DATABASE_URL", "postgres://db/keygate")]);
        let c = s.common_with_defaults(None, Some(&dev)).unwrap();
        assert_eq!(c.master_keys.active_id(), "k1");
        let mine = MasterKeys::generate_spec("mine").unwrap();
        let s = sources(&[
            ("KEYGATE_DATABASE_URL", "postgres://db/keygate"),
            ("KEYGATE_MASTER_KEYS", &mine),
        ]);
        let c = s.common_with_defaults(None, Some(&dev)).unwrap();
        assert_eq!(c.master_keys.active_id(), "mine", "the user's key wins");
    }

    #[test]
    fn ext_authz_listens_by_default_and_can_be_turned_off() {
        let c = sources(&[]).ext_authz("0.0.0.0:9191").unwrap();
        assert_eq!(c.listen, Some("0.0.0.0:9191".parse().unwrap()));
        let c = sources(&[("KEYGATE_EXT_AUTHZ_LISTEN", "OFF")])
            .ext_authz("0.0.0.0:9191")
            .unwrap();
        assert_eq!(c.listen, None);
        let err = sources(&[("KEYGATE_EXT_AUTHZ_LISTEN", "nine")])
            .ext_authz("0.0.0.0:9191")
            .unwrap_err();
        assert_eq!(err.field, "KEYGATE_EXT_AUTHZ_LISTEN");
        let err = sources(&[("KEYGATE_EXT_AUTHZ_REQUIREMENTS_HEADER", "x bad")])
            .ext_authz("0.0.0.0:9191")
            .unwrap_err();
        assert_eq!(err.field, "KEYGATE_EXT_AUTHZ_REQUIREMENTS_HEADER");
    }

    #[test]
    fn missing_database_points_at_dev_mode() {
        let err = sources(&[("KEYGATE_MASTER_KEYS", &key())])
            .common(None)
            .unwrap_err();
        assert_eq!(err.field, "KEYGATE_DATABASE_URL");
        assert!(err.fix.contains("keygate dev"));
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        std::fs::write(&path, "postgres://u:hunter2@db/keygate\n").unwrap();
        let k = key();
        let s = sources(&[
            ("KEYGATE_DATABASE_URL_FILE", path.to_str().unwrap()),
            ("KEYGATE_MASTER_KEYS", &k),
        ]);
        let c = s.common(None).unwrap();
        assert_eq!(c.database_url.expose(), "postgres://u:hunter2@db/keygate");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn bad_values_are_rejected_with_their_field() {
        let k = key();
        let s = sources(&[
            ("KEYGATE_DATABASE_URL", "mysql://x"),
            ("KEYGATE_MASTER_KEYS", &k),
        ]);
        assert_eq!(s.common(None).unwrap_err().field, "KEYGATE_DATABASE_URL");
        let s = sources(&[("KEYGATE_LISTEN", "nope")]);
        assert_eq!(
            s.gateway(Some("http://x"), "0.0.0.0:8080")
                .unwrap_err()
                .field,
            "KEYGATE_LISTEN"
        );
        let s = sources(&[("KEYGATE_PUBLIC_URL", "ftp://x")]);
        assert_eq!(
            s.gateway(None, "0.0.0.0:8080").unwrap_err().field,
            "KEYGATE_PUBLIC_URL"
        );
        let s = sources(&[]);
        assert_eq!(
            s.gateway(None, "0.0.0.0:8080").unwrap_err().field,
            "KEYGATE_PUBLIC_URL"
        );
        let s = sources(&[
            ("KEYGATE_PUBLIC_URL", "https://a"),
            ("KEYGATE_REDIS_URL", "http://r"),
        ]);
        assert_eq!(
            s.gateway(None, "0.0.0.0:8080").unwrap_err().field,
            "KEYGATE_REDIS_URL"
        );
    }

    #[test]
    fn watch_namespaces_are_a_validated_list() {
        let op = |raw: &str| {
            sources(&[
                ("KEYGATE_PUBLIC_URL", "https://a"),
                ("KEYGATE_WATCH_NAMESPACES", raw),
            ])
            .operator("0.0.0.0:8081")
        };
        assert!(op("").unwrap().watch_namespaces.is_empty(), "blank: all");
        assert!(
            sources(&[("KEYGATE_PUBLIC_URL", "https://a")])
                .operator("0.0.0.0:8081")
                .unwrap()
                .watch_namespaces
                .is_empty(),
            "unset: all"
        );
        assert_eq!(op("team-a").unwrap().watch_namespaces, ["team-a"]);
        assert_eq!(
            op(" team-a , b2,team-a ").unwrap().watch_namespaces,
            ["team-a", "b2"],
            "trimmed, a repeat counts once, order kept"
        );
        for (raw, names) in [
            ("team-a,,team-b", "item 2"),
            ("team-a,", "item 2"),
            (",team-a", "item 1"),
            ("Team-A", "`Team-A`"),
            ("team_a", "`team_a`"),
            ("-team", "`-team`"),
            ("team-", "`team-`"),
            ("a.b", "`a.b`"),
        ] {
            let err = op(raw).unwrap_err();
            assert_eq!(err.field, "KEYGATE_WATCH_NAMESPACES", "{raw}");
            let line = err.to_string();
            assert!(line.starts_with("KEYGATE_WATCH_NAMESPACES: "), "{line}");
            assert!(line.contains(names), "{raw}: {line}");
            assert!(!line.contains('\n'), "one line: {line}");
        }
        let long = "a".repeat(64);
        assert!(op(&long).is_err(), "longer than 63");
        assert!(op(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn the_operator_needs_a_valid_public_url_and_reads_its_data_dir() {
        let err = sources(&[]).operator("0.0.0.0:8081").unwrap_err();
        assert_eq!(err.field, "KEYGATE_PUBLIC_URL");
        assert!(err.problem.contains("issuer"), "{err}");
        let err = sources(&[("KEYGATE_PUBLIC_URL", "ftp://x")])
            .operator("0.0.0.0:8081")
            .unwrap_err();
        assert_eq!(err.field, "KEYGATE_PUBLIC_URL");
        let op = sources(&[
            ("KEYGATE_PUBLIC_URL", "https://auth.example.com/"),
            ("POD_NAME", "keygate-operator-0"),
        ])
        .operator("0.0.0.0:8081")
        .unwrap();
        assert_eq!(op.public_url, "https://auth.example.com");
        assert_eq!(op.data_dir, PathBuf::from(".keygate"));
        assert_eq!(op.pod_name.as_deref(), Some("keygate-operator-0"));
        let op = sources(&[
            ("KEYGATE_PUBLIC_URL", "https://a"),
            ("KEYGATE_DATA_DIR", "/var/lib/keygate"),
        ])
        .operator("0.0.0.0:8081")
        .unwrap();
        assert_eq!(op.data_dir, PathBuf::from("/var/lib/keygate"));
    }

    #[test]
    fn smtp_needs_a_sender_and_an_smtp_url() {
        let g = |vars: &[(&str, &str)]| {
            let mut all = vec![("KEYGATE_PUBLIC_URL", "https://a")];
            all.extend_from_slice(vars);
            sources(&all).gateway(None, "0.0.0.0:8080")
        };
        let err = g(&[("KEYGATE_SMTP_URL", "smtp://mail:587")]).unwrap_err();
        assert_eq!(err.field, "KEYGATE_SMTP_FROM");
        let err = g(&[
            ("KEYGATE_SMTP_URL", "http://mail"),
            ("KEYGATE_SMTP_FROM", "k@example.com"),
        ])
        .unwrap_err();
        assert_eq!(err.field, "KEYGATE_SMTP_URL");
        let ok = g(&[
            ("KEYGATE_SMTP_URL", "smtp://mail:587"),
            ("KEYGATE_SMTP_FROM", "k@example.com"),
        ])
        .unwrap();
        assert_eq!(
            ok.smtp.as_ref().map(|m| m.from.as_str()),
            Some("k@example.com")
        );
        assert!(
            !format!("{ok:?}").contains("smtp://mail"),
            "the URL is a secret"
        );
    }

    #[test]
    fn bootstrap_admin_and_breached_list_are_typed_settings() {
        let g = |vars: &[(&str, &str)]| {
            let mut all = vec![("KEYGATE_PUBLIC_URL", "https://a")];
            all.extend_from_slice(vars);
            sources(&all).gateway(None, "0.0.0.0:8080")
        };
        let none = g(&[]).unwrap();
        assert!(none.bootstrap.is_none());
        assert!(none.breached_passwords_file.is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, " first boot \n").unwrap();
        let set = g(&[
            ("KEYGATE_BOOTSTRAP_TENANT", "acme"),
            ("KEYGATE_BOOTSTRAP_EMAIL", "root@example.com"),
            ("KEYGATE_BOOTSTRAP_PASSWORD_FILE", file.to_str().unwrap()),
            ("KEYGATE_BREACHED_PASSWORDS_FILE", file.to_str().unwrap()),
        ])
        .unwrap();
        let admin = set.bootstrap.unwrap();
        assert_eq!(
            (admin.tenant.as_str(), admin.email.as_str()),
            ("acme", "root@example.com")
        );
        assert_eq!(
            admin.password.expose(),
            " first boot ",
            "only the line end is dropped"
        );
        assert_eq!(set.breached_passwords_file.as_deref(), Some(file.as_path()));
        for (vars, field) in [
            (
                vec![("KEYGATE_BOOTSTRAP_TENANT", "acme")],
                "KEYGATE_BOOTSTRAP_EMAIL",
            ),
            (
                vec![("KEYGATE_BOOTSTRAP_EMAIL", "root@example.com")],
                "KEYGATE_BOOTSTRAP_TENANT",
            ),
            (
                vec![
                    ("KEYGATE_BOOTSTRAP_TENANT", "acme"),
                    ("KEYGATE_BOOTSTRAP_EMAIL", "root@example.com"),
                ],
                "KEYGATE_BOOTSTRAP_PASSWORD",
            ),
            (
                vec![
                    ("KEYGATE_BOOTSTRAP_TENANT", "acme"),
                    ("KEYGATE_BOOTSTRAP_EMAIL", "root@example.com"),
                    ("KEYGATE_BOOTSTRAP_PASSWORD_FILE", "/nonexistent/pw"),
                ],
                "KEYGATE_BOOTSTRAP_PASSWORD_FILE",
            ),
            (
                vec![("KEYGATE_BREACHED_PASSWORDS_FILE", "/nonexistent/list")],
                "KEYGATE_BREACHED_PASSWORDS_FILE",
            ),
        ] {
            assert_eq!(g(&vars).unwrap_err().field, field);
        }
    }

    #[test]
    fn hashing_pool_and_shutdown_drain_are_whole_numbers_with_defaults() {
        let g = sources(&[("KEYGATE_PUBLIC_URL", "https://a")])
            .gateway(None, "0.0.0.0:8080")
            .unwrap();
        assert!(g.hash_pool.threads >= 1);
        assert_eq!(
            g.hash_pool.queue,
            g.hash_pool.threads * HashPool::QUEUE_PER_THREAD
        );
        assert_eq!(g.shutdown_drain, Duration::from_secs(20));
        let g = sources(&[
            ("KEYGATE_PUBLIC_URL", "https://a"),
            ("KEYGATE_PASSWORD_HASH_THREADS", "3"),
            ("KEYGATE_PASSWORD_HASH_QUEUE", "0"),
            ("KEYGATE_SHUTDOWN_DRAIN_SECONDS", "45"),
        ])
        .gateway(None, "0.0.0.0:8080")
        .unwrap();
        assert_eq!(
            g.hash_pool,
            HashPool {
                threads: 3,
                queue: 0
            }
        );
        assert_eq!(g.shutdown_drain, Duration::from_secs(45));
        for (key, bad) in [
            ("KEYGATE_PASSWORD_HASH_THREADS", "0"),
            ("KEYGATE_PASSWORD_HASH_THREADS", "two"),
            ("KEYGATE_PASSWORD_HASH_QUEUE", "-1"),
            ("KEYGATE_SHUTDOWN_DRAIN_SECONDS", "0"),
        ] {
            let e = sources(&[("KEYGATE_PUBLIC_URL", "https://a"), (key, bad)])
                .gateway(None, "0.0.0.0:8080")
                .unwrap_err();
            assert_eq!(e.field, key, "{bad}");
        }
    }

    #[test]
    fn trusted_proxies_are_cidrs_or_addresses() {
        let s = sources(&[
            ("KEYGATE_PUBLIC_URL", "https://a"),
            ("KEYGATE_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7,fd00::/8"),
        ]);
        let g = s.gateway(None, "0.0.0.0:8080").unwrap();
        assert_eq!(g.trusted_proxies.len(), 3);
        assert!(g.trusted_proxies[1].contains(&"192.0.2.7".parse::<std::net::IpAddr>().unwrap()));
        let s = sources(&[
            ("KEYGATE_PUBLIC_URL", "https://a"),
            ("KEYGATE_TRUSTED_PROXIES", "10.0.0.0/33"),
        ]);
        assert_eq!(
            s.gateway(None, "0.0.0.0:8080").unwrap_err().field,
            "KEYGATE_TRUSTED_PROXIES"
        );
        assert!(
            sources(&[("KEYGATE_PUBLIC_URL", "https://a")])
                .gateway(None, "0.0.0.0:8080")
                .unwrap()
                .trusted_proxies
                .is_empty()
        );
    }

    #[test]
    fn file_is_read_env_wins_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keygate.yaml");
        std::fs::write(
            &path,
            "public_url: https://from-file.example/\nlisten: 127.0.0.1:9000\n",
        )
        .unwrap();
        let s = Sources::new(
            Box::new(|k| (k == "KEYGATE_LISTEN").then(|| "127.0.0.1:9100".to_owned())),
            Some(&path),
        )
        .unwrap();
        let g = s.gateway(None, "0.0.0.0:8080").unwrap();
        assert_eq!(g.public_url, "https://from-file.example");
        assert_eq!(g.listen.port(), 9100);
        std::fs::write(&path, "pubic_url: https://typo\n").unwrap();
        let err = Sources::new(Box::new(|_| None), Some(&path)).unwrap_err();
        assert!(err.problem.contains("pubic_url"), "{err}");
    }
}
