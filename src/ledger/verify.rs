//! Checks a stored log against its own entries: recomputes every leaf from
//! the entry bytes, rebuilds the tree, compares every stored node and
//! every stored checkpoint (root and signature), and names the first index
//! where anything disagrees.
//!
//! Pure: storage feeds it leaf hashes in index order, the stored nodes and
//! the checkpoints; it never touches a database.

use super::checkpoint::{self, Checkpoint};
use super::merkle::{Frontier, Hash};
use serde::Serialize;

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
    /// The lowest index anything is wrong at; `None` means the log is intact.
    pub first_bad_index: Option<u64>,
    /// Problems in index order (the first few hundred).
    pub findings: Vec<Finding>,
}

/// A stored checkpoint as storage holds it.
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: Vec<u8>,
    pub note: String,
}

const MAX_FINDINGS: usize = 200;

pub struct LogChecker<'k> {
    frontier: Frontier,
    /// `stored[level][index]`, `None` where a node row is missing.
    stored: Vec<Vec<Option<Hash>>>,
    checkpoints: Vec<StoredCheckpoint>,
    next_checkpoint: usize,
    verifier_keys: &'k [String],
    origin: String,
    findings: Vec<Finding>,
    /// Indices whose entry is missing or differs, ascending: node and root
    /// mismatches above them are their consequence, not new findings.
    bad_leaves: Vec<u64>,
    checked: usize,
}

impl<'k> LogChecker<'k> {
    /// `stored` holds every stored node by level; `checkpoints` in any
    /// order; a checkpoint is good when one of `verifier_keys` signed it.
    pub fn new(
        origin: &str,
        stored: Vec<Vec<Option<Hash>>>,
        mut checkpoints: Vec<StoredCheckpoint>,
        verifier_keys: &'k [String],
    ) -> Self {
        checkpoints.sort_by_key(|c| c.size);
        Self {
            frontier: Frontier::default(),
            stored,
            checkpoints,
            next_checkpoint: 0,
            verifier_keys,
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

    fn stored_node(&self, level: u32, index: u64) -> Option<Hash> {
        self.stored
            .get(level as usize)
            .and_then(|l| l.get(index as usize))
            .copied()
            .flatten()
    }

    /// Feeds the leaf at the next index.
    pub fn leaf(&mut self, leaf: Leaf) {
        let index = self.frontier.size();
        let hash = match leaf {
            Leaf::Missing => {
                self.bad_leaves.push(index);
                self.report(
                    index,
                    "the entry is missing (deleted, or its position emptied)".into(),
                );
                // Carry on with the stored hash so later indices are judged
                // on their own.
                self.stored_node(0, index).unwrap_or([0; 32])
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
                hash
            }
        };
        for made in self.frontier.push(hash) {
            let first_leaf = made.index << made.level;
            let covered = first_leaf + (1 << made.level);
            match self.stored_node(made.level, made.index) {
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
        while self
            .checkpoints
            .get(self.next_checkpoint)
            .is_some_and(|c| c.size == size)
        {
            let cp = &self.checkpoints[self.next_checkpoint];
            let root = self.frontier.root();
            let mut problem = self.judge_checkpoint(cp, root);
            if problem
                .as_deref()
                .is_some_and(|p| p.contains("does not match the tree"))
                && self.has_bad_leaf_in(0, size)
            {
                // Already explained by a bad entry below this size.
                problem = None;
            }
            self.next_checkpoint += 1;
            self.checked += 1;
            if let Some(problem) = problem {
                // The earliest checkpoint that fails bounds the damage from
                // above; the index is the last one it covers.
                self.report(size.saturating_sub(1), problem);
            }
        }
    }

    fn judge_checkpoint(&self, cp: &StoredCheckpoint, root: Hash) -> Option<String> {
        let opened = self
            .verifier_keys
            .iter()
            .find_map(|key| checkpoint::open(&cp.note, key).ok());
        let Some(Checkpoint {
            origin,
            size,
            root: signed_root,
        }) = opened
        else {
            return Some(format!(
                "checkpoint {} is not signed by the log's key",
                cp.size
            ));
        };
        if origin != self.origin || size != cp.size || signed_root.as_slice() != cp.root {
            return Some(format!(
                "checkpoint {} disagrees with its signed note",
                cp.size
            ));
        }
        (signed_root != root).then(|| {
            format!(
                "checkpoint {} does not match the tree rebuilt from the entries",
                cp.size
            )
        })
    }

    /// Finishes: checkpoints and nodes beyond the entries are problems too.
    pub fn finish(mut self) -> Report {
        let size = self.frontier.size();
        for cp in &self.checkpoints[self.next_checkpoint..] {
            if self.findings.len() < MAX_FINDINGS {
                self.findings.push(Finding {
                    index: size,
                    problem: format!("checkpoint {} is beyond the {size} entries", cp.size),
                });
            }
        }
        for (level, nodes) in self.stored.iter().enumerate() {
            let complete = (size >> level) as usize;
            if nodes.len() > complete && self.findings.len() < MAX_FINDINGS {
                self.findings.push(Finding {
                    index: (complete as u64) << level,
                    problem: format!("level {level} stores nodes beyond the entries"),
                });
            }
        }
        self.findings.sort_by_key(|f| f.index);
        Report {
            size,
            checkpoints_checked: self.checked,
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
                checkpoints.push(StoredCheckpoint {
                    size: cp.size,
                    root: root.to_vec(),
                    note: signer.sign(&cp),
                });
            }
        }
        Fixture {
            entries,
            stored,
            checkpoints,
            keys: vec![signer.verifier_key()],
        }
    }

    fn check(f: Fixture, leaves: impl Fn(usize, &[u8]) -> Option<Vec<u8>>) -> Report {
        let mut checker = LogChecker::new("test/log", f.stored, f.checkpoints, &f.keys);
        for (i, e) in f.entries.iter().enumerate() {
            match leaves(i, e) {
                Some(bytes) => checker.leaf(Leaf::Present {
                    hash: leaf_hash(&bytes),
                    columns_match: true,
                }),
                None => checker.leaf(Leaf::Missing),
            }
        }
        checker.finish()
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
        f.checkpoints[1] = StoredCheckpoint {
            size: 8,
            root: vec![7; 32],
            note: other.sign(&cp),
        };
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
}
