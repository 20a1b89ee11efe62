//! The tamper-evident access log (issue #4). So far: the RFC 6962/9162
//! Merkle tree and its proofs, as pure functions.

pub mod merkle;
