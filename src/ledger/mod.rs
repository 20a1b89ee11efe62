//! The tamper-evident access log (issue #4), as pure code: entries and
//! their plain-language explanations, the RFC 6962/9162 Merkle tree with
//! its proofs and O(log n) append frontier, C2SP signed-note checkpoints,
//! the whole-log checker behind `genomegate verify-log`, and screening.
//! Storage is in `db::ledger`; background work in `workers`.

pub mod checkpoint;
pub mod entry;
pub mod merkle;
pub mod screening;
pub mod verify;
