//! Properties of genome and per-project identifiers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use chrono::{DateTime, Utc};
use genomegate::pseudonym::genome_id::{
    project_patient_id, project_sample, project_sample_id, sample_id, IdKind, IdParseError,
    PrintedId,
};
use genomegate::pseudonym::keyring::{KeyDomain, Keyring};
use proptest::prelude::*;
use std::collections::HashSet;

const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(0, 0).unwrap()
}

fn keyring(seed: u8, versions: u32) -> Keyring {
    let mut secrets = Vec::new();
    for domain in KeyDomain::ALL {
        for v in 1..=versions {
            secrets.push((domain, v, epoch(), vec![seed.wrapping_add(v as u8); 32]));
        }
    }
    Keyring::from_secrets(secrets, true).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn ids_are_stable_and_round_trip(hospital in "[a-z-]{3,12}", sample_ref in "[A-Za-z0-9-]{1,20}") {
        let keys = keyring(1, 1);
        let a = sample_id(keys.current(KeyDomain::Sample), &hospital, &sample_ref);
        let b = sample_id(keys.current(KeyDomain::Sample), &hospital, &sample_ref);
        prop_assert_eq!(a, b);
        prop_assert_eq!(PrintedId::parse(IdKind::Sample, &a.to_string()).unwrap(), a);
        prop_assert_eq!(a.version(), 1);
    }

    /// Every single wrong character is caught: in the head, the body or the
    /// check character itself.
    #[test]
    fn single_substitutions_are_refused(sample_ref in "[A-Z0-9]{4,12}", position in 0usize..25, replacement in 0usize..32) {
        let keys = keyring(2, 1);
        let printed = sample_id(keys.current(KeyDomain::Sample), "hospital-a", &sample_ref).to_string();
        let mut bytes = printed.clone().into_bytes();
        let position = position % bytes.len();
        prop_assume!(bytes[position] != b'-');
        let new = if position == bytes.len() - 1 { b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*"[replacement % 37] } else { ALPHABET[replacement] };
        prop_assume!(new != bytes[position]);
        bytes[position] = new;
        let mutated = String::from_utf8(bytes).unwrap();
        prop_assert!(PrintedId::parse(IdKind::Sample, &mutated).is_err(), "{} -> {} accepted", printed, mutated);
    }

    /// Every swap of two different neighbouring characters is caught.
    #[test]
    fn adjacent_transpositions_are_refused(sample_ref in "[A-Z0-9]{4,12}", position in 0usize..20) {
        let keys = keyring(3, 1);
        let printed = sample_id(keys.current(KeyDomain::Sample), "hospital-a", &sample_ref).to_string();
        let compact: Vec<u8> = printed.bytes().filter(|b| *b != b'-').collect();
        let i = position % (compact.len() - 1);
        prop_assume!(compact[i] != compact[i + 1]);
        let mut swapped = compact.clone();
        swapped.swap(i, i + 1);
        // Re-insert the head separator so only the swap differs.
        let text = String::from_utf8(swapped).unwrap();
        let (head, tail) = text.split_at(3);
        let result = PrintedId::parse(IdKind::Sample, &format!("{head}-{tail}"));
        prop_assert!(result.is_err(), "{} swap at {} accepted", printed, i);
    }

    /// After rotation, new IDs carry the new version, differ from the old
    /// ones, and old ones still parse to their own version.
    #[test]
    fn rotation_issues_new_ids_and_old_ones_still_parse(sample_ref in "[A-Z0-9]{4,12}") {
        let keys = keyring(4, 2);
        let old = sample_id(keys.version(KeyDomain::Sample, 1).unwrap(), "hospital-a", &sample_ref);
        let new = sample_id(keys.current(KeyDomain::Sample), "hospital-a", &sample_ref);
        prop_assert_eq!(new.version(), 2);
        prop_assert_ne!(old.bits(), new.bits());
        prop_assert_eq!(PrintedId::parse(IdKind::Sample, &old.to_string()).unwrap().version(), 1);
        let resolved: Vec<_> = keys.newest_first(KeyDomain::Sample).map(|k| sample_id(k, "hospital-a", &sample_ref)).collect();
        prop_assert!(resolved.contains(&old), "the old ID can be recomputed to resolve it");
    }
}

#[test]
fn wrong_check_character_is_named_as_such() {
    let keys = keyring(5, 1);
    let printed = sample_id(keys.current(KeyDomain::Sample), "hospital-a", "SPEC-1").to_string();
    let last = printed.chars().last().unwrap();
    let wrong = if last == '0' { '1' } else { '0' };
    let mutated = format!("{}{wrong}", &printed[..printed.len() - 1]);
    assert_eq!(
        PrintedId::parse(IdKind::Sample, &mutated),
        Err(IdParseError::CheckFailed)
    );
}

/// The genome IDs of `n` samples of hospital-a.
fn hospital_samples(keys: &Keyring, n: usize) -> Vec<PrintedId> {
    (0..n)
        .map(|i| {
            sample_id(
                keys.current(KeyDomain::Sample),
                "hospital-a",
                &format!("S{i}"),
            )
        })
        .collect()
}

/// Two data-use projects receive the same 2,000 samples and patients; no
/// identifier appears in both, and nothing a recipient holds lets it match
/// one project's IDs to the other's.
#[test]
fn per_project_ids_cannot_be_joined() {
    let keys = keyring(6, 1);
    let project_key = keys.current(KeyDomain::Project);
    let samples = hospital_samples(&keys, 2000);
    let view = |project: &str| -> Vec<PrintedId> {
        samples
            .iter()
            .map(|s| project_sample_id(project_key, project, s))
            .collect()
    };
    let (a, b) = (view("project-alpha"), view("project-beta"));
    assert_eq!(a, view("project-alpha"), "stable within a project");
    let set_a: HashSet<_> = a.iter().map(|i| i.bits()).collect();
    let set_b: HashSet<_> = b.iter().map(|i| i.bits()).collect();
    let genome: HashSet<_> = samples.iter().map(|i| i.bits()).collect();
    assert!(
        set_a.is_disjoint(&set_b),
        "no shared identifier between projects"
    );
    assert!(
        set_a.is_disjoint(&genome) && set_b.is_disjoint(&genome),
        "projects never see genome IDs"
    );
    // A join needs a common key; the IDs carry no ordering or structure to
    // match on either: sorting both views pairs up samples no better than chance.
    let mut order_a: Vec<usize> = (0..a.len()).collect();
    let mut order_b = order_a.clone();
    order_a.sort_by_key(|i| a[*i].bits());
    order_b.sort_by_key(|i| b[*i].bits());
    let coincidences = order_a.iter().zip(&order_b).filter(|(x, y)| x == y).count();
    assert!(
        coincidences < 10,
        "sorted orders coincide {coincidences} times"
    );
    // The same patient is unlinkable across projects too.
    let p1 = project_patient_id(project_key, "project-alpha", &"ab".repeat(32));
    let p2 = project_patient_id(project_key, "project-beta", &"ab".repeat(32));
    assert_ne!(p1.bits(), p2.bits());
    assert_eq!(p1.kind(), IdKind::ProjectPatient);
}

/// Manifest order (decision 0030): each project lists the same 2,000
/// samples in its own keyed order. A sample's rank in one project says
/// nothing of its rank in another, nor of its genome ID's rank; and the
/// order key is not printed in the ID, so holding the ID alone does not
/// give it away either.
#[test]
fn manifest_orders_are_unrelated_across_projects() {
    let keys = keyring(8, 1);
    let project_key = keys.current(KeyDomain::Project);
    let samples = hospital_samples(&keys, 2000);
    // Each sample's rank in an ordering given by `key`.
    let ranks = |key: &dyn Fn(usize) -> u128| -> Vec<f64> {
        let mut order: Vec<usize> = (0..samples.len()).collect();
        order.sort_by_key(|i| key(*i));
        let mut rank = vec![0.0; samples.len()];
        for (r, i) in order.into_iter().enumerate() {
            rank[i] = r as f64;
        }
        rank
    };
    let samples = &samples;
    let order_in = |project: &'static str| {
        ranks(&move |i| u128::from(project_sample(project_key, project, &samples[i]).order))
    };
    let (a, b) = (order_in("project-alpha"), order_in("project-beta"));
    assert_eq!(a, order_in("project-alpha"), "stable within a project");
    let by_genome = ranks(&|i| samples[i].bits());
    let by_printed_id =
        ranks(&|i| project_sample_id(project_key, "project-alpha", &samples[i]).bits());
    // Spearman's rank correlation: about 0 +/- 0.022 for unrelated orders
    // of 2,000, exactly 1 for a shared one.
    let correlation = |x: &[f64], y: &[f64]| -> f64 {
        let n = x.len() as f64;
        let mean = (n - 1.0) / 2.0;
        let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mean) * (b - mean)).sum();
        let var: f64 = x.iter().map(|a| (a - mean) * (a - mean)).sum();
        cov / var
    };
    for (name, other) in [
        ("another project", &b),
        ("genome IDs", &by_genome),
        ("the project's own printed IDs", &by_printed_id),
    ] {
        let r = correlation(&a, other);
        assert!(r.abs() < 0.1, "rank correlation with {name}: {r}");
    }
    assert!(
        project_sample(project_key, "project-alpha", &samples[0]).order < 1 << 62,
        "62 bits"
    );
}

/// 10 million derived sample IDs (80 bits each) without a collision.
#[test]
fn no_collisions_across_ten_million_ids() {
    let keys = keyring(7, 1);
    let key = keys.current(KeyDomain::Sample);
    let mut bits: Vec<u128> = (0..10_000_000u32)
        .map(|i| sample_id(key, "hospital-a", &i.to_string()).bits())
        .collect();
    bits.sort_unstable();
    let before = bits.len();
    bits.dedup();
    assert_eq!(bits.len(), before, "{} collisions", before - bits.len());
}
