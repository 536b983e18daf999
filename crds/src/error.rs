//! The one error type of this crate.

/// Everything that can go wrong while parsing durations, rendering CRDs or loading manifests.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A duration string is not a Go duration of the form `1h30m`, `5m`, `10s` or `250ms`.
    #[error(
        "invalid duration {input:?}: {reason} (expected digits followed by h, m, s or ms, e.g. \"1h30m\")"
    )]
    InvalidDuration {
        /// The text that failed to parse.
        input: String,
        /// What exactly is wrong with it.
        reason: &'static str,
    },

    /// A CRD could not be rendered as YAML.
    #[error("rendering CRD {name} as YAML failed")]
    RenderCrd {
        /// The CRD's `metadata.name`.
        name: String,
        /// What the YAML serializer reported.
        #[source]
        source: Box<serde_saphyr::SerializeError>,
    },

    /// The manifest text is not valid YAML.
    #[error("manifest is not valid YAML: {0}")]
    Yaml(#[source] Box<serde_saphyr::Error>),

    /// A YAML document is not a Kubernetes object (no `apiVersion` or `kind`, or not a mapping).
    #[error("document {document} (line {line}): not a Kubernetes object: {reason}")]
    NotAnObject {
        /// 1-based position of the document in the file.
        document: usize,
        /// Line where the document starts.
        line: u64,
        /// What is missing.
        reason: String,
    },

    /// A document of the keygate.dev group has a version or kind this build does not know.
    #[error(
        "document {document} (line {line}): unknown keygate resource {api_version}/{kind}; \
         this build understands {expected}"
    )]
    UnknownKind {
        /// 1-based position of the document in the file.
        document: usize,
        /// Line where the document starts.
        line: u64,
        /// The document's `apiVersion`.
        api_version: String,
        /// The document's `kind`.
        kind: String,
        /// The kinds this build understands, as `apiVersion/Kind` list.
        expected: String,
    },

    /// A keygate document does not match its type (wrong field type, bad enum value, missing field).
    #[error("document {document} (line {line}, {kind} {name:?}): {source}{hint}")]
    InvalidDocument {
        /// 1-based position of the document in the file.
        document: usize,
        /// Line where the document starts.
        line: u64,
        /// The document's `kind`.
        kind: String,
        /// The document's `metadata.name`, empty when absent.
        name: String,
        /// What serde reported.
        #[source]
        source: serde_json::Error,
        /// Advice for a common cause, empty when there is none.
        hint: &'static str,
    },

    /// A keygate document carries a field the type does not have (a typo, usually).
    #[error("document {document} (line {line}, {kind} {name:?}): unknown field {path}")]
    UnknownField {
        /// 1-based position of the document in the file.
        document: usize,
        /// Line where the document starts.
        line: u64,
        /// The document's `kind`.
        kind: String,
        /// The document's `metadata.name`, empty when absent.
        name: String,
        /// Dotted path of the unknown field, e.g. `spec.tokens.accesTokenTtl`.
        path: String,
    },
}
