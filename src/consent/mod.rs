//! Unified consent documents and per-patient consent state.
//!
//! Pure domain rules: no actix, no diesel. The database and HTTP layers call in
//! here; nothing in here calls out.

pub mod document;
pub mod enquiry;
pub mod fhir;
pub mod ids;
pub mod item_catalog;
pub mod person;
pub mod recontact;
pub mod state;

pub use document::{ChangeKind, DocumentStatus, DocumentVersion, ScopeItem, VersionHistory};
pub use ids::{DocumentFamily, DocumentVersionId, ScopeItemKey};
pub use person::Person;
pub use state::{
    derive_consent, ConsentEvent, ConsentSnapshot, ConsentStatus, Decision, EventKind, ItemBasis,
    ItemState,
};
