//! Field reference rendered from the CRD schemas (filled in later).

/// Renders the field reference of every keygate kind as Markdown.
pub fn reference_markdown() -> String {
    String::new()
}
