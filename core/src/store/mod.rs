//! Storage (being written).

mod error;
mod model;

pub use error::{CONSTRAINTS, StoreError};
pub use model::*;
