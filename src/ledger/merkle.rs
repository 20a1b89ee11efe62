//! RFC 6962 / RFC 9162 Merkle tree hashing and proofs, on ring's SHA-256.
//!
//! - leaf hash = SHA-256(0x00 ‖ entry);
//! - node hash = SHA-256(0x01 ‖ left ‖ right);
//! - the empty tree's root = SHA-256 of nothing.
//!
//! [`NodeStore`] keeps every complete node (level by level), which is what
//! the database will store: an append touches at most log₂ n nodes, and any
//! root, inclusion proof or consistency proof is assembled from O(log n)
//! stored subtrees instead of rehashing leaves. Verification follows RFC
//! 9162 §2.1.3.2 and §2.1.4.2.

use ring::digest::{digest, Context, SHA256};

pub type Hash = [u8; 32];

fn to_hash(d: ring::digest::Digest) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn empty_root() -> Hash {
    to_hash(digest(&SHA256, b""))
}

pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0x00]);
    ctx.update(entry);
    to_hash(ctx.finish())
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0x01]);
    ctx.update(left);
    ctx.update(right);
    to_hash(ctx.finish())
}

/// The largest power of two strictly smaller than `n` (n ≥ 2).
fn split_point(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Every complete node of an append-only tree: `levels[0]` are leaf hashes,
/// `levels[h][i]` hashes leaves `[i·2ʰ, (i+1)·2ʰ)`.
#[derive(Debug, Clone, Default)]
pub struct NodeStore {
    levels: Vec<Vec<Hash>>,
}

impl NodeStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends a leaf hash and every node it completes; returns its index.
    pub fn push(&mut self, leaf: Hash) -> u64 {
        let index = self.size();
        let mut hash = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(hash);
            let len = self.levels[level].len();
            if len % 2 == 1 {
                break;
            }
            hash = node_hash(&self.levels[level][len - 2], &self.levels[level][len - 1]);
            level += 1;
        }
        index
    }

    fn stored(&self) -> impl FnMut(u32, u64) -> Hash + '_ {
        |level, index| self.levels[level as usize][index as usize]
    }

    /// The root of the first `size` leaves.
    pub fn root(&self, size: u64) -> Option<Hash> {
        (size <= self.size()).then(|| root_from(size, &mut self.stored()))
    }

    /// The audit path of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        (index < size && size <= self.size())
            .then(|| inclusion_proof_from(index, size, &mut self.stored()))
    }

    /// The proof that the tree of `old` leaves is a prefix of the tree of
    /// `new` leaves.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Option<Vec<Hash>> {
        (old <= new && new <= self.size())
            .then(|| consistency_proof_from(old, new, &mut self.stored()))
    }
}

/// MTH(D[start:end]) from stored perfect subtrees: `node(level, index)`
/// is the hash of leaves `[index·2^level, (index+1)·2^level)`.
fn range_hash(start: u64, end: u64, node: &mut dyn FnMut(u32, u64) -> Hash) -> Hash {
    if end == start {
        return empty_root();
    }
    // Split [start, end) into aligned perfect subtrees, left to right,
    // then fold right to left as the RFC's recursion would.
    let mut parts = Vec::new();
    let mut at = start;
    while at < end {
        let mut height = if at == 0 { 63 } else { at.trailing_zeros() };
        while (1u64 << height.min(63)) > end - at {
            height -= 1;
        }
        parts.push(node(height, at >> height));
        at += 1 << height;
    }
    let mut acc = parts.pop().unwrap_or_else(empty_root);
    while let Some(left) = parts.pop() {
        acc = node_hash(&left, &acc);
    }
    acc
}

/// The root of the first `size` leaves, from stored nodes.
pub fn root_from(size: u64, node: &mut dyn FnMut(u32, u64) -> Hash) -> Hash {
    range_hash(0, size, node)
}

/// The audit path of leaf `index` (< `size`) from stored nodes.
pub fn inclusion_proof_from(
    index: u64,
    size: u64,
    node: &mut dyn FnMut(u32, u64) -> Hash,
) -> Vec<Hash> {
    fn path(
        m: u64,
        start: u64,
        end: u64,
        node: &mut dyn FnMut(u32, u64) -> Hash,
        out: &mut Vec<Hash>,
    ) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split_point(n);
        if m < k {
            path(m, start, start + k, node, out);
            out.push(range_hash(start + k, end, node));
        } else {
            path(m - k, start + k, end, node, out);
            out.push(range_hash(start, start + k, node));
        }
    }
    let mut proof = Vec::new();
    if index < size {
        path(index, 0, size, node, &mut proof);
    }
    proof
}

/// The consistency proof between sizes `old` ≤ `new` from stored nodes.
pub fn consistency_proof_from(
    old: u64,
    new: u64,
    node: &mut dyn FnMut(u32, u64) -> Hash,
) -> Vec<Hash> {
    fn subproof(
        m: u64,
        start: u64,
        end: u64,
        whole: bool,
        node: &mut dyn FnMut(u32, u64) -> Hash,
        out: &mut Vec<Hash>,
    ) {
        let n = end - start;
        if m == n {
            if !whole {
                out.push(range_hash(start, end, node));
            }
            return;
        }
        let k = split_point(n);
        if m <= k {
            subproof(m, start, start + k, whole, node, out);
            out.push(range_hash(start + k, end, node));
        } else {
            subproof(m - k, start + k, end, false, node, out);
            out.push(range_hash(start, start + k, node));
        }
    }
    let mut proof = Vec::new();
    if old > 0 && old < new {
        subproof(old, 0, new, true, node, &mut proof);
    }
    proof
}

/// The stored nodes `(level, index)` a computation over stored nodes reads,
/// found by running it once against a recorder. Lets storage fetch them
/// all in one query before the real run.
pub fn nodes_read_by(run: impl FnOnce(&mut dyn FnMut(u32, u64) -> Hash)) -> Vec<(u32, u64)> {
    let mut seen = Vec::new();
    run(&mut |level, index| {
        seen.push((level, index));
        [0u8; 32]
    });
    seen.sort_unstable();
    seen.dedup();
    seen
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the index is outside the tree")]
    IndexOutOfRange,
    #[error("the proof has the wrong length")]
    WrongLength,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    #[error("the old tree is larger than the new one")]
    SizesOutOfOrder,
}

/// RFC 9162 §2.1.3.2: does `proof` show `leaf` at `index` in the tree of
/// `size` leaves with root `root`?
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange);
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r == root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// RFC 9162 §2.1.4.2: does `proof` show the tree of `old` leaves (root
/// `old_root`) is a prefix of the tree of `new` leaves (root `new_root`)?
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::SizesOutOfOrder);
    }
    if old == new {
        return if !proof.is_empty() {
            Err(ProofError::WrongLength)
        } else if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old == 0 {
        // Anything is consistent with the empty tree; the proof is empty.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr == old_root && &sr == new_root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// The right edge of a tree: at each level, the last complete node if it
/// still waits for a right sibling. That is all an append needs, so the
/// database loads at most log₂ n stored nodes per append batch, never the
/// whole tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `waiting[h]`: node `(size >> h) - 1` at level h, when `(size >> h)` is odd.
    waiting: Vec<Option<Hash>>,
}

/// A node an append completed: store it at (level, index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewNode {
    pub level: u32,
    pub index: u64,
    pub hash: Hash,
}

impl Frontier {
    /// The stored nodes (level, index) needed to resume appending at `size`.
    pub fn needed(size: u64) -> Vec<(u32, u64)> {
        (0..64u32)
            .filter(|h| (size >> h) & 1 == 1)
            .map(|h| (h, (size >> h) - 1))
            .collect()
    }

    /// Resumes from the nodes [`Frontier::needed`] named, in that order.
    pub fn resume(size: u64, nodes: &[Hash]) -> Option<Self> {
        let needed = Self::needed(size);
        if needed.len() != nodes.len() {
            return None;
        }
        let mut waiting = vec![None; needed.last().map_or(0, |(h, _)| *h as usize + 1)];
        for ((level, _), hash) in needed.iter().zip(nodes) {
            waiting[*level as usize] = Some(*hash);
        }
        Some(Self { size, waiting })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; returns every node it completes, the leaf first.
    pub fn push(&mut self, leaf: Hash) -> Vec<NewNode> {
        let mut made = vec![NewNode {
            level: 0,
            index: self.size,
            hash: leaf,
        }];
        let mut hash = leaf;
        let mut level = 0usize;
        loop {
            if self.waiting.len() == level {
                self.waiting.push(None);
            }
            match self.waiting[level].take() {
                Some(left) => {
                    hash = node_hash(&left, &hash);
                    let index = self.size >> (level + 1);
                    level += 1;
                    made.push(NewNode {
                        level: level as u32,
                        index,
                        hash,
                    });
                }
                None => {
                    self.waiting[level] = Some(hash);
                    break;
                }
            }
        }
        self.size += 1;
        made
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut acc: Option<Hash> = None;
        for hash in self.waiting.iter().flatten() {
            acc = Some(match acc {
                None => *hash,
                Some(right) => node_hash(hash, &right),
            });
        }
        acc.unwrap_or_else(empty_root)
    }
}
