//! What a pass of the directory source publishes: the typed status of every resource, the
//! `status.yaml` written from it (the only place it becomes YAML), one log line per change,
//! and the next steps `keygate dev` prints.

use crate::DirectorySource;
use crate::reconcile::Status;
use crate::secrets;
use serde::ser::SerializeMap;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One resource's status in a [`StatusView`], with where the resource lives.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    /// The resource's namespace.
    pub namespace: String,
    /// The resource's name.
    pub name: String,
    /// What its reconcile returned.
    pub status: Status,
}

/// What one sync pass produced: the status of every resource, by display name
/// (`Kind namespace/name`). It becomes YAML only in `status.yaml`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatusView(pub(crate) BTreeMap<String, Published>);

impl StatusView {
    /// The status of the resource displayed as `Kind namespace/name`.
    pub fn get(&self, display_name: &str) -> Option<&Status> {
        self.0.get(display_name).map(|p| &p.status)
    }

    /// Every resource by display name, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Published)> {
        self.0.iter().map(|(name, p)| (name.as_str(), p))
    }

    /// How many resources the view holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the view holds no resource.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Index<&str> for StatusView {
    type Output = Status;

    /// The status of `Kind namespace/name`; panics when absent, like a map's index.
    fn index(&self, display_name: &str) -> &Status {
        &self.0[display_name].status
    }
}

/// `status.yaml`: display name to status, as `kubectl get -o yaml` shows a status.
impl serde::Serialize for StatusView {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, published) in &self.0 {
            map.serialize_entry(name, &published.status)?;
        }
        map.end()
    }
}

/// What `keygate dev` tells a newcomer after the first pass, read from typed statuses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NextSteps {
    /// Ready tenants and their issuers.
    pub tenants: Vec<TenantEndpoints>,
    /// API keys and the Secret files that hold them.
    pub api_keys: Vec<ApiKeySecretFile>,
    /// Registered OAuth clients, with the Secret file of a confidential one's secret.
    pub oauth_clients: Vec<OAuthClientEntry>,
}

/// A Ready OAuthClient: its client id and, when confidential, where its secret was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthClientEntry {
    /// `OAuthClient namespace/name`.
    pub resource: String,
    /// The `client_id` applications use.
    pub client_id: String,
    /// `<data_dir>/secrets/<namespace>/<secretName>.yaml` (confidential clients).
    pub secret_file: Option<PathBuf>,
}

/// A tenant and the issuer URL its sign-in, discovery and JWKS live under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantEndpoints {
    /// `Tenant namespace/name`.
    pub resource: String,
    /// The tenant's name (the URL segment).
    pub tenant: String,
    /// `{public_url}/t/{tenant}`.
    pub issuer: String,
}

/// An ApiKey and the file its Secret was written to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeySecretFile {
    /// `ApiKey namespace/name`.
    pub resource: String,
    /// `<data_dir>/secrets/<namespace>/<secretName>.yaml`.
    pub file: PathBuf,
}

impl DirectorySource {
    /// The tenants with issuers, the API keys with Secret files and the Ready OAuth clients
    /// in `view`.
    pub fn next_steps(&self, view: &StatusView) -> NextSteps {
        let mut steps = NextSteps::default();
        for (resource, published) in view.iter() {
            match &published.status {
                Status::Tenant(t) => {
                    if let Some(issuer) = &t.issuer_url {
                        steps.tenants.push(TenantEndpoints {
                            resource: resource.to_owned(),
                            tenant: published.name.clone(),
                            issuer: issuer.clone(),
                        });
                    }
                }
                Status::ApiKey(k) => {
                    if let Some(secret) = &k.secret_name {
                        steps.api_keys.push(ApiKeySecretFile {
                            resource: resource.to_owned(),
                            file: secrets::secret_path(
                                &self.secrets_dir,
                                &published.namespace,
                                secret,
                            ),
                        });
                    }
                }
                Status::OAuthClient(c) => {
                    if let (Some(client_id), true) = (&c.client_id, published.status.is_ready()) {
                        steps.oauth_clients.push(OAuthClientEntry {
                            resource: resource.to_owned(),
                            client_id: client_id.clone(),
                            secret_file: c.secret_name.as_ref().map(|secret| {
                                secrets::secret_path(
                                    &self.secrets_dir,
                                    &published.namespace,
                                    secret,
                                )
                            }),
                        });
                    }
                }
                Status::IdentityProvider(_) | Status::Role(_) => {}
            }
        }
        steps
    }
}

/// Keeps transition times of unchanged conditions, logs one line per changed or vanished
/// resource, and writes the status file when anything changed.
pub(crate) fn publish_view(
    previous: &Mutex<StatusView>,
    status_file: Option<&Path>,
    view: &mut StatusView,
) {
    let mut previous = previous.lock().unwrap_or_else(|e| e.into_inner());
    let mut changed = false;
    for (name, published) in view.0.iter_mut() {
        let before = previous.get(name);
        if let Some(before) = before {
            published.status.keep_transition_times(before);
        }
        if before != Some(&published.status) {
            changed = true;
            log_status(name, &published.status);
        }
    }
    for (name, _) in previous.iter() {
        if view.get(name).is_none() {
            changed = true;
            tracing::info!(resource = %name, "deleted: no longer in the manifest folder");
        }
    }
    if changed && let Some(path) = status_file {
        write_status_file(path, view);
    }
    *previous = view.clone();
}

fn write_status_file(path: &Path, view: &StatusView) {
    let header = "# Written by the keygate operator after each pass over the manifest folder: the\n# status of every resource, as `kubectl get -o yaml` would show it. Do not edit.\n";
    let result = serde_saphyr::to_string(view)
        .map_err(|e| e.to_string())
        .and_then(|yaml| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            let tmp = path.with_extension("yaml.tmp");
            std::fs::write(&tmp, format!("{header}{yaml}")).map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, path).map_err(|e| e.to_string())
        });
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "could not write the status file");
    }
}

fn log_status(name: &str, status: &Status) {
    let (state, reason, message) = match status.ready() {
        Some(c) => (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
        None => ("Unknown", "", ""),
    };
    if state == "True" {
        tracing::info!(resource = name, ready = state, reason, "{message}");
    } else {
        tracing::warn!(resource = name, ready = state, reason, "{message}");
    }
    // A warning beside a true Ready (e.g. a Role's EmailVerificationRequired) is shown too.
    for c in status
        .conditions()
        .iter()
        .filter(|c| c.type_ != keygate_crds::CONDITION_READY && c.status == "False")
    {
        tracing::warn!(resource = name, condition = %c.type_, reason = %c.reason, "{}", c.message);
    }
}
