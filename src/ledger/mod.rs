//! The tamper-evident access log (issue #4). Built so far, as pure code:
//! the RFC 6962/9162 Merkle tree with its proofs, the O(log n) append
//! frontier, and C2SP signed-note checkpoints. Storage, appends from every
//! action, notification and the API follow.

pub mod checkpoint;
pub mod merkle;
