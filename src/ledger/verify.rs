//! Checks a stored log against its own entries: recomputes every leaf from
//! the entry bytes, rebuilds the tree, compares every stored node and
//! every stored checkpoint (root and signature), and names the first index
//! where anything disagrees.
//!
//! Pure: storage feeds it leaf hashes in index order, and streams of the
//! stored nodes (in any order) and checkpoints (smallest first); it never
//! touches a database. Nothing here holds the whole log: a node is looked
//! up when the rebuilt tree makes it, in a stream that storage writes in
//! nearly that order (see [`InOrder`]).

use super::checkpoint::{self, Checkpoint};
use super::merkle::{Frontier, Hash};
use serde::Serialize;
use std::collections::HashMap;
use std::iter::Peekable;

/// Rows that storage streams in its own order, taken by key in the order a
/// check needs them.
///
/// The log's tables are written as the tree grows, so their storage order
/// is nearly the order the check asks for, and a lookup usually takes the
/// very next row. Rows that arrive before they are asked for wait in a
/// buffer. An intact log keeps that buffer to the rows of the largest batch
/// committed out of turn (a release's entries wait while smaller actions
/// that began after it commit first). A key with no row is known to be
/// missing only at the end of the stream, so a lookup of a missing key
/// reads the rest of the stream into the buffer: only a damaged log pays
/// that memory.
pub struct InOrder<K, V, I> {
    rows: I,
    early: HashMap<K, V>,
    peak: usize,
}

impl<K, V, I> InOrder<K, V, I>
where
    K: Eq + std::hash::Hash + Copy + Ord,
    I: Iterator<Item = (K, V)>,
{
    pub fn new(rows: I) -> Self {
        Self {
            rows,
            early: HashMap::new(),
            peak: 0,
        }
    }

    /// The row with `key`, or `None` when no row has it (every row not
    /// taken yet is then in the buffer).
    pub fn take(&mut self, key: K) -> Option<V> {
        if !self.early.is_empty() {
            if let Some(value) = self.early.remove(&key) {
                return Some(value);
            }
        }
        for (k, value) in self.rows.by_ref() {
            if k == key {
                return Some(value);
            }
            self.early.insert(k, value);
            self.peak = self.peak.max(self.early.len());
        }
        None
    }

    /// After a `take` that found nothing: the lowest key still held, and
    /// how many rows are held.
    pub fn lowest_held(&self) -> Option<(K, usize)> {
        self.early
            .keys()
            .min()
            .map(|lowest| (*lowest, self.early.len()))
    }

    /// The most rows ever held back at once.
    pub fn peak_held(&self) -> usize {
        self.peak
    }

    /// The keys of every row never taken; reads the rest of the stream.
    pub fn untaken(self) -> impl Iterator<Item = K> {
        self.early.into_keys().chain(self.rows.map(|(k, _)| k))
    }
}

/// What storage found at one index.
#[derive(Debug, Clone, Copy)]
pub enum Leaf {
    /// No leaf row, or its entry row is gone.
    Missing,
    Present {
        /// The leaf hash of the entry bytes (`merkle::leaf_hash`).
        hash: Hash,
        /// Whether the entry's indexed columns agree with its bytes.
        columns_match: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The first tree index the problem affects.
    pub index: u64,
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub size: u64,
    pub checkpoints_checked: usize,
    /// The most stored rows (nodes, leaves or entries, whichever peaked)
    /// read ahead of their turn and held at once: a bound on what the check
    /// kept in memory beyond fixed-size state.
    pub peak_rows_held: usize,
    /// The lowest index anything is wrong at; `None` means the log is intact.
    pub first_bad_index: Option<u64>,
    /// Problems in index order (the first few hundred).
    pub findings: Vec<Finding>,
}

/// A stored checkpoint, with its note already opened.
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: Vec<u8>,
    /// What the signed note says, when one of the log's verifier keys
    /// signed it; `None` otherwise.
    pub signed: Option<Checkpoint>,
}

impl StoredCheckpoint {
    /// Opens `note` with the first of `verifier_keys` that signed it. An
    /// Ed25519 verification each: storage does this on its reader thread,
    /// beside the check, rather than on the checking thread.
    pub fn open(size: u64, root: Vec<u8>, note: &str, verifier_keys: &[String]) -> Self {
        Self {
            size,
            root,
            signed: verifier_keys
                .iter()
                .find_map(|key| checkpoint::open(note, key).ok()),
        }
    }
}

const MAX_FINDINGS: usize = 200;

/// A stored node's position: (level, index).
pub type NodePosition = (u32, u64);

pub struct LogChecker<N, C>
where
    N: Iterator<Item = (NodePosition, Hash)>,
    C: Iterator<Item = StoredCheckpoint>,
{
    frontier: Frontier,
    /// Stored nodes, taken as the rebuilt tree makes each one.
    stored: InOrder<NodePosition, Hash, N>,
    /// Stored checkpoints, smallest first.
    checkpoints: Peekable<C>,
    origin: String,
    findings: Vec<Finding>,
    /// Indices whose entry is missing or differs, ascending: node and root
    /// mismatches above them are their consequence, not new findings.
    bad_leaves: Vec<u64>,
    checked: usize,
}

impl<N, C> LogChecker<N, C>
where
    N: Iterator<Item = (NodePosition, Hash)>,
    C: Iterator<Item = StoredCheckpoint>,
{
    /// `stored` streams every stored node, in any order (cheapest in the
    /// order they were written); `checkpoints` every stored checkpoint,
    /// smallest first, its note opened with the log's verifier keys.
    pub fn new(origin: &str, stored: N, checkpoints: C) -> Self {
        Self {
            frontier: Frontier::default(),
            stored: InOrder::new(stored),
            checkpoints: checkpoints.peekable(),
            origin: origin.to_owned(),
            findings: Vec::new(),
            bad_leaves: Vec::new(),
            checked: 0,
        }
    }

    fn report(&mut self, index: u64, problem: String) {
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(Finding { index, problem });
        }
    }

    fn has_bad_leaf_in(&self, start: u64, end: u64) -> bool {
        let at = self.bad_leaves.partition_point(|i| *i < start);
        self.bad_leaves.get(at).is_some_and(|i| *i < end)
    }

    /// The size of the tree rebuilt so far.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The most stored nodes read ahead of their turn and held at once.
    pub fn peak_nodes_held(&self) -> usize {
        self.stored.peak_held()
    }

    /// Storage holds leaf rows beyond a gap longer than the rows after it:
    /// the check ends at the gap instead of rebuilding a tree through it.
    pub fn leaves_beyond_gap(&mut self, next_present: u64, rows_beyond: usize) {
        let index = self.frontier.size();
        self.report(
            index,
            format!(
                "no leaf rows from index {index} to {}, then {rows_beyond} rows beyond",
                next_present.saturating_sub(1)
            ),
        );
    }

    /// Feeds the leaf at the next index.
    pub fn leaf(&mut self, leaf: Leaf) {
        let index = self.frontier.size();
        let (hash, stored_leaf) = match leaf {
            Leaf::Missing => {
                self.bad_leaves.push(index);
                self.report(
                    index,
                    "the entry is missing (deleted, or its position emptied)".into(),
                );
                // Carry on with the stored hash so later indices are judged
                // on their own.
                let stored = self.stored.take((0, index));
                (stored.unwrap_or([0; 32]), Some(stored))
            }
            Leaf::Present {
                hash,
                columns_match,
            } => {
                if !columns_match {
                    self.report(
                        index,
                        "the entry's indexed columns disagree with its signed bytes".into(),
                    );
                }
                (hash, None)
            }
        };
        for made in self.frontier.push(hash) {
            let first_leaf = made.index << made.level;
            let covered = first_leaf + (1 << made.level);
            let stored = match (made.level, stored_leaf) {
                (0, Some(taken)) => taken,
                _ => self.stored.take((made.level, made.index)),
            };
            match stored {
                Some(stored) if stored == made.hash => {}
                _ if made.level > 0 && self.has_bad_leaf_in(first_leaf, covered) => {}
                Some(_) if made.level == 0 => {
                    self.bad_leaves.push(index);
                    self.report(
                        first_leaf,
                        "the entry differs from the one logged here (edited or moved)".into(),
                    )
                }
                Some(_) => self.report(
                    first_leaf,
                    format!(
                        "stored node ({}, {}) does not match the entries",
                        made.level, made.index
                    ),
                ),
                None => self.report(
                    first_leaf,
                    format!("stored node ({}, {}) is missing", made.level, made.index),
                ),
            }
        }
        self.check_checkpoints_at(self.frontier.size());
    }

    fn check_checkpoints_at(&mut self, size: u64) {
        while let Some(cp) = self.checkpoints.next_if(|c| c.size <= size) {
            let root = self.frontier.root();
            let mut problem = if cp.size < size {
                // Only a stream out of order (or a checkpoint of size 0)
                // gets here; it cannot be judged against the tree.
                Some(format!("checkpoint {} is out of order", cp.size))
            } else {
                self.judge_checkpoint(&cp, root)
            };
            if problem
                .as_deref()
                .is_some_and(|p| p.contains("does not match the tree"))
                && self.has_bad_leaf_in(0, size)
            {
                // Already explained by a bad entry below this size.
                problem = None;
            }
            self.checked += 1;
            if let Some(problem) = problem {
                // The earliest checkpoint that fails bounds the damage from
                // above; the index is the last one it covers.
                self.report(size.saturating_sub(1), problem);
            }
        }
    }

    fn judge_checkpoint(&self, cp: &StoredCheckpoint, root: Hash) -> Option<String> {
        let Some(Checkpoint {
            origin,
            size,
            root: signed_root,
        }) = &cp.signed
        else {
            return Some(format!(
                "checkpoint {} is not signed by the log's key",
                cp.size
            ));
        };
        if *origin != self.origin || *size != cp.size || signed_root.as_slice() != cp.root {
            return Some(format!(
                "checkpoint {} disagrees with its signed note",
                cp.size
            ));
        }
        (*signed_root != root).then(|| {
            format!(
                "checkpoint {} does not match the tree rebuilt from the entries",
                cp.size
            )
        })
    }

    /// Finishes: checkpoints and nodes beyond the entries are problems too.
    /// `peak_rows_held` is the most rows storage held back while feeding
    /// leaves (see [`InOrder`]); the nodes' own peak is added here.
    pub fn finish(mut self, peak_rows_held: usize) -> Report {
        let size = self.frontier.size();
        for cp in self.checkpoints.by_ref() {
            if self.findings.len() < MAX_FINDINGS {
                self.findings.push(Finding {
                    index: size,
                    problem: format!("checkpoint {} is beyond the {size} entries", cp.size),
                });
            }
        }
        let peak_rows_held = peak_rows_held.max(self.stored.peak_held());
        // Every node the entries make was taken, so what is left lies
        // beyond them: one finding per level, at the first leaf past the
        // last complete node.
        let mut beyond: Vec<u32> = self.stored.untaken().map(|(level, _)| level).collect();
        beyond.sort_unstable();
        beyond.dedup();
        for level in beyond {
            if self.findings.len() < MAX_FINDINGS {
                let complete = size.checked_shr(level).unwrap_or(0);
                self.findings.push(Finding {
                    index: complete.checked_shl(level).unwrap_or(u64::MAX),
                    problem: format!("level {level} stores nodes beyond the entries"),
                });
            }
        }
        self.findings.sort_by_key(|f| f.index);
        Report {
            size,
            checkpoints_checked: self.checked,
            peak_rows_held,
            first_bad_index: self.findings.first().map(|f| f.index),
            findings: self.findings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::checkpoint::NoteSigner;
    use crate::ledger::merkle::{leaf_hash, NodeStore};

    fn signer() -> NoteSigner {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        NoteSigner::from_pkcs8("test/log", pkcs8.as_ref()).unwrap()
    }

    struct Fixture {
        entries: Vec<Vec<u8>>,
        stored: Vec<Vec<Option<Hash>>>,
        checkpoints: Vec<StoredCheckpoint>,
        keys: Vec<String>,
    }

    fn fixture(n: usize) -> Fixture {
        let signer = signer();
        let keys = vec![signer.verifier_key()];
        let entries: Vec<Vec<u8>> = (0..n).map(|i| format!("entry {i}").into_bytes()).collect();
        let mut frontier = Frontier::default();
        let mut stored: Vec<Vec<Option<Hash>>> = Vec::new();
        let mut checkpoints = Vec::new();
        let mut tree = NodeStore::new();
        for (i, e) in entries.iter().enumerate() {
            tree.push(leaf_hash(e));
            for made in frontier.push(leaf_hash(e)) {
                let level = made.level as usize;
                if stored.len() <= level {
                    stored.resize(level + 1, Vec::new());
                }
                stored[level].push(Some(made.hash));
            }
            if (i + 1) % 4 == 0 {
                let root = tree.root(i as u64 + 1).unwrap();
                let cp = Checkpoint {
                    origin: "test/log".into(),
                    size: i as u64 + 1,
                    root,
                };
                checkpoints.push(StoredCheckpoint::open(
                    cp.size,
                    root.to_vec(),
                    &signer.sign(&cp),
                    &keys,
                ));
            }
        }
        Fixture {
            entries,
            stored,
            checkpoints,
            keys,
        }
    }

    /// The fixture's stored nodes as storage streams them: in the order
    /// the tree made them (as the integrator writes them), or reversed.
    fn node_rows(stored: &[Vec<Option<Hash>>], reversed: bool) -> Vec<(NodePosition, Hash)> {
        let mut rows: Vec<(NodePosition, Hash)> = stored
            .iter()
            .enumerate()
            .flat_map(|(level, nodes)| {
                nodes.iter().enumerate().filter_map(move |(index, hash)| {
                    hash.map(|h| ((level as u32, index as u64), h))
                })
            })
            .collect();
        // Made order: node (level, index) is made by leaf ((index + 1) << level) - 1.
        rows.sort_by_key(|((level, index), _)| (((index + 1) << level) - 1, *level));
        if reversed {
            rows.reverse();
        }
        rows
    }

    fn check_with(
        f: Fixture,
        reversed: bool,
        leaves: impl Fn(usize, &[u8]) -> Option<Vec<u8>>,
    ) -> Report {
        let rows = node_rows(&f.stored, reversed);
        let mut checker = LogChecker::new("test/log", rows.into_iter(), f.checkpoints.into_iter());
        for (i, e) in f.entries.iter().enumerate() {
            match leaves(i, e) {
                Some(bytes) => checker.leaf(Leaf::Present {
                    hash: leaf_hash(&bytes),
                    columns_match: true,
                }),
                None => checker.leaf(Leaf::Missing),
            }
        }
        checker.finish(0)
    }

    fn check(f: Fixture, leaves: impl Fn(usize, &[u8]) -> Option<Vec<u8>>) -> Report {
        check_with(f, false, leaves)
    }

    #[test]
    fn an_intact_log_passes() {
        let report = check(fixture(37), |_, e| Some(e.to_vec()));
        assert_eq!(report.first_bad_index, None, "{:?}", report.findings);
        assert_eq!(report.checkpoints_checked, 9);
        assert_eq!(report.size, 37);
    }

    #[test]
    fn edits_deletions_and_swaps_name_the_first_bad_index() {
        let edited = check(fixture(37), |i, e| {
            Some(if i == 13 {
                b"forged".to_vec()
            } else {
                e.to_vec()
            })
        });
        assert_eq!(edited.first_bad_index, Some(13));
        let deleted = check(fixture(37), |i, e| (i != 20).then(|| e.to_vec()));
        assert_eq!(deleted.first_bad_index, Some(20));
        let f = fixture(37);
        let (a, b) = (f.entries[5].clone(), f.entries[9].clone());
        let swapped = check(f, move |i, e| {
            Some(match i {
                5 => b.clone(),
                9 => a.clone(),
                _ => e.to_vec(),
            })
        });
        assert_eq!(swapped.first_bad_index, Some(5));
    }

    #[test]
    fn forged_and_unsigned_checkpoints_are_found() {
        let mut f = fixture(16);
        let other = signer();
        let cp = Checkpoint {
            origin: "test/log".into(),
            size: 8,
            root: [7; 32],
        };
        f.checkpoints[1] = StoredCheckpoint::open(8, vec![7; 32], &other.sign(&cp), &f.keys);
        let report = check(f, |_, e| Some(e.to_vec()));
        assert_eq!(report.first_bad_index, Some(7));
        assert!(report.findings[0].problem.contains("not signed"));
    }

    #[test]
    fn a_tampered_node_is_found() {
        let mut f = fixture(16);
        f.stored[2][1] = Some([1; 32]);
        let report = check(f, |_, e| Some(e.to_vec()));
        assert_eq!(report.first_bad_index, Some(4));
    }

    #[test]
    fn nodes_stored_in_made_order_are_taken_without_holding_any_back() {
        let report = check(fixture(1000), |_, e| Some(e.to_vec()));
        assert_eq!(report.first_bad_index, None, "{:?}", report.findings);
        assert_eq!(report.peak_rows_held, 0);
    }

    #[test]
    fn the_verdict_does_not_depend_on_storage_order() {
        let intact = check_with(fixture(200), true, |_, e| Some(e.to_vec()));
        assert_eq!(intact.first_bad_index, None, "{:?}", intact.findings);
        assert!(
            intact.peak_rows_held > 100,
            "reversed order holds rows back"
        );
        let in_order = check(fixture(200), |i, e| {
            Some(if i == 77 { b"x".to_vec() } else { e.to_vec() })
        });
        let reversed = check_with(fixture(200), true, |i, e| {
            Some(if i == 77 { b"x".to_vec() } else { e.to_vec() })
        });
        assert_eq!(in_order.findings, reversed.findings);
        assert_eq!(in_order.first_bad_index, Some(77));
    }

    #[test]
    fn missing_and_extra_nodes_are_found() {
        let mut f = fixture(16);
        f.stored[1][3] = None;
        let report = check(f, |_, e| Some(e.to_vec()));
        assert_eq!(report.first_bad_index, Some(6), "{:?}", report.findings);
        assert!(report.findings[0].problem.contains("(1, 3) is missing"));

        let mut f = fixture(16);
        f.stored[2].push(Some([9; 32]));
        let report = check(f, |_, e| Some(e.to_vec()));
        assert_eq!(report.first_bad_index, Some(16), "{:?}", report.findings);
        assert!(report.findings[0]
            .problem
            .contains("level 2 stores nodes beyond"));
    }

    #[test]
    fn in_order_takes_by_key_and_knows_a_missing_key_at_the_end() {
        let rows = vec![(1u64, 'b'), (0, 'a'), (2, 'c'), (4, 'e')];
        let mut stream = InOrder::new(rows.into_iter());
        assert_eq!(stream.take(0), Some('a'));
        assert_eq!(stream.peak_held(), 1, "row 1 came early");
        assert_eq!(stream.take(1), Some('b'));
        assert_eq!(stream.take(2), Some('c'));
        assert_eq!(stream.take(3), None);
        assert_eq!(stream.lowest_held(), Some((4, 1)));
        assert_eq!(stream.take(4), Some('e'));
        assert_eq!(stream.lowest_held(), None);
        assert_eq!(stream.untaken().count(), 0);
    }
}
