//! RFC 6962 Merkle tree: known answers, proofs against a naive recursive
//! implementation, failure cases, and random sizes up to 10,000.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use genomegate::ledger::merkle::{
    empty_root, leaf_hash, node_hash, verify_consistency, verify_inclusion, Hash, NodeStore,
    ProofError,
};
use proptest::prelude::*;

/// transparency-dev testonly leaf inputs.
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];
const ROOT_8: &str = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328";

fn leaves() -> Vec<Hash> {
    LEAVES
        .iter()
        .map(|h| leaf_hash(&hex::decode(h).unwrap()))
        .collect()
}

fn store(hashes: &[Hash]) -> NodeStore {
    let mut s = NodeStore::new();
    for h in hashes {
        s.push(*h);
    }
    s
}

// ---- The naive reference: the RFC's recursive definitions, verbatim. ----

fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => empty_root(),
        1 => d[0],
        n => {
            let k = k_of(n);
            node_hash(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}

fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
    if d.len() <= 1 {
        return vec![];
    }
    let k = k_of(d.len());
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

fn proof(m: usize, d: &[Hash]) -> Vec<Hash> {
    if m == 0 || m == d.len() {
        vec![]
    } else {
        subproof(m, d, true)
    }
}

// ---- Known answers ----

#[test]
fn known_answer_roots() {
    assert_eq!(
        hex::encode(empty_root()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(NodeStore::new().root(0).unwrap(), empty_root());
    let tree = store(&leaves());
    assert_eq!(hex::encode(tree.root(8).unwrap()), ROOT_8);
    assert_eq!(
        hex::encode(leaves()[0]),
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "leaf of the empty entry"
    );
    assert_eq!(tree.root(9), None, "no root beyond the tree");
}

#[test]
fn every_proof_up_to_eight_matches_the_naive_definition_and_verifies() {
    let d = leaves();
    let tree = store(&d);
    for n in 1..=8 {
        let root = tree.root(n as u64).unwrap();
        assert_eq!(root, mth(&d[..n]), "root at {n}");
        for m in 0..n {
            let p = tree.inclusion_proof(m as u64, n as u64).unwrap();
            assert_eq!(p, path(m, &d[..n]), "inclusion ({m}, {n})");
            verify_inclusion(&d[m], m as u64, n as u64, &p, &root).unwrap();
        }
        for m in 0..=n {
            let p = tree.consistency_proof(m as u64, n as u64).unwrap();
            assert_eq!(p, proof(m, &d[..n]), "consistency ({m}, {n})");
            verify_consistency(m as u64, n as u64, &tree.root(m as u64).unwrap(), &root, &p)
                .unwrap();
        }
    }
}

// ---- Failure cases ----

fn flip(h: &mut Hash) {
    h[7] ^= 0x10;
}

#[test]
fn tampered_inclusion_proofs_fail() {
    let d = leaves();
    let tree = store(&d);
    let (m, n) = (5u64, 8u64);
    let root = tree.root(n).unwrap();
    let good = tree.inclusion_proof(m, n).unwrap();
    for i in 0..good.len() {
        let mut bad = good.clone();
        flip(&mut bad[i]);
        assert_eq!(
            verify_inclusion(&d[5], m, n, &bad, &root),
            Err(ProofError::RootMismatch),
            "flipped element {i}"
        );
    }
    let mut leaf = d[5];
    flip(&mut leaf);
    assert_eq!(
        verify_inclusion(&leaf, m, n, &good, &root),
        Err(ProofError::RootMismatch),
        "flipped leaf"
    );
    let mut wrong_root = root;
    flip(&mut wrong_root);
    assert!(verify_inclusion(&d[5], m, n, &good, &wrong_root).is_err());
    // A wrong size claims the proof belongs to another tree: that tree's
    // root. (For 7 and 8 the path has the same shape, so only the root tells.)
    for size in [6u64, 7] {
        assert!(
            verify_inclusion(&d[5], m, size, &good, &tree.root(size).unwrap()).is_err(),
            "wrong size {size}"
        );
    }
    assert!(
        verify_inclusion(&d[5], 4, n, &good, &root).is_err(),
        "wrong index"
    );
    assert_eq!(
        verify_inclusion(&d[5], m, n, &good[..good.len() - 1], &root),
        Err(ProofError::WrongLength),
        "truncated"
    );
    let mut extended = good.clone();
    extended.push(root);
    assert_eq!(
        verify_inclusion(&d[5], m, n, &extended, &root),
        Err(ProofError::WrongLength),
        "extended"
    );
    assert_eq!(
        verify_inclusion(&d[5], 8, n, &good, &root),
        Err(ProofError::IndexOutOfRange)
    );
}

#[test]
fn tampered_consistency_proofs_fail() {
    let d = leaves();
    let tree = store(&d);
    for (m, n) in [(3u64, 8u64), (4, 7), (6, 8), (1, 5)] {
        let (r1, r2) = (tree.root(m).unwrap(), tree.root(n).unwrap());
        let good = tree.consistency_proof(m, n).unwrap();
        verify_consistency(m, n, &r1, &r2, &good).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            flip(&mut bad[i]);
            assert!(
                verify_consistency(m, n, &r1, &r2, &bad).is_err(),
                "({m},{n}) flipped {i}"
            );
        }
        let mut r1_bad = r1;
        flip(&mut r1_bad);
        assert!(
            verify_consistency(m, n, &r1_bad, &r2, &good).is_err(),
            "({m},{n}) forged old root"
        );
        let smaller = tree.root(n - 1).unwrap();
        assert!(
            verify_consistency(m, n - 1, &r1, &smaller, &good).is_err(),
            "({m},{n}) wrong size"
        );
        assert!(
            verify_consistency(m, n, &r1, &r2, &good[..good.len() - 1]).is_err(),
            "({m},{n}) truncated"
        );
        let mut extended = good.clone();
        extended.push(r2);
        assert!(
            verify_consistency(m, n, &r1, &r2, &extended).is_err(),
            "({m},{n}) extended"
        );
    }
    let r = tree.root(8).unwrap();
    assert_eq!(
        verify_consistency(8, 3, &r, &r, &[]),
        Err(ProofError::SizesOutOfOrder)
    );
}

// ---- Random sizes ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_sizes_up_to_ten_thousand(n in 1usize..=10_000, a in any::<u64>(), b in any::<u64>()) {
        let d: Vec<Hash> = (0..n).map(|i| leaf_hash(&(i as u64).to_be_bytes())).collect();
        let tree = store(&d);
        let root = tree.root(n as u64).unwrap();
        prop_assert_eq!(root, mth(&d));
        let m = (a % n as u64) as usize;
        let p = tree.inclusion_proof(m as u64, n as u64).unwrap();
        prop_assert_eq!(&p, &path(m, &d));
        prop_assert!(verify_inclusion(&d[m], m as u64, n as u64, &p, &root).is_ok());
        let old = (b % (n as u64 + 1)) as usize;
        let c = tree.consistency_proof(old as u64, n as u64).unwrap();
        prop_assert_eq!(&c, &proof(old, &d));
        prop_assert!(verify_consistency(old as u64, n as u64, &tree.root(old as u64).unwrap(), &root, &c).is_ok());
    }
}

// ---- The append frontier ----

use genomegate::ledger::merkle::Frontier;

#[test]
fn frontier_appends_match_the_node_store_and_resume_from_stored_nodes() {
    let mut frontier = Frontier::default();
    let mut store = NodeStore::new();
    let mut stored: std::collections::HashMap<(u32, u64), Hash> = Default::default();
    for i in 0..2_000u64 {
        let leaf = leaf_hash(&i.to_be_bytes());
        store.push(leaf);
        for node in frontier.push(leaf) {
            assert!(
                stored.insert((node.level, node.index), node.hash).is_none(),
                "node ({}, {}) made twice",
                node.level,
                node.index
            );
        }
        let size = i + 1;
        assert_eq!(frontier.root(), store.root(size).unwrap(), "root at {size}");
        // A fresh frontier from at most log2(n) stored nodes carries on identically.
        let needed = Frontier::needed(size);
        assert!(needed.len() <= 64 - size.leading_zeros() as usize);
        let nodes: Vec<Hash> = needed.iter().map(|k| stored[k]).collect();
        assert_eq!(Frontier::resume(size, &nodes).unwrap(), frontier);
    }
    assert_eq!(Frontier::default().root(), empty_root());
    assert_eq!(hex::encode(store_of_known().root()), ROOT_8);
    assert!(
        Frontier::resume(5, &[]).is_none(),
        "missing nodes are refused"
    );
}

fn store_of_known() -> Frontier {
    let mut f = Frontier::default();
    for leaf in leaves() {
        f.push(leaf);
    }
    f
}
