//! Property tests for consent-state derivation.
//!
//! The service folds events forward. The reference model here scans
//! backwards per item, as a careful human would read a paper file. Over
//! random version histories and event sequences the two must agree, and the
//! "as of" answers must be stable under later events and input order.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use chrono::{DateTime, Utc};
use genomegate::calendar::day_of;
use genomegate::consent::document::PublishedVersion;
use genomegate::consent::{
    derive_consent, ChangeKind, ConsentEvent, ConsentStatus, Decision, EventKind, Person,
    ScopeItemKey, VersionHistory,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

const KEYS: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];

fn key(k: &str) -> ScopeItemKey {
    ScopeItemKey::parse(k).unwrap()
}
fn hour(h: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(h * 3600, 0).unwrap()
}

/// Versions at hours 100, 200, …; each declares a change for every key it
/// knows about.
fn history_strategy() -> impl Strategy<Value = Vec<PublishedVersion>> {
    let change = prop_oneof![
        Just(ChangeKind::Unchanged),
        Just(ChangeKind::Editorial),
        Just(ChangeKind::Material),
        Just(ChangeKind::Removed),
    ];
    (
        prop::collection::vec(any::<bool>(), 4),
        prop::collection::vec(
            (
                prop::collection::vec(change, 4),
                prop::collection::vec(any::<bool>(), 4),
            ),
            0..4,
        ),
    )
        .prop_map(|(first, later)| {
            let mut versions = Vec::new();
            let mut active: Vec<bool> = first.clone();
            if !active.iter().any(|a| *a) {
                active[0] = true;
            }
            versions.push(PublishedVersion {
                number: 1,
                effective_from: hour(100),
                changes: KEYS
                    .iter()
                    .zip(&active)
                    .filter(|(_, a)| **a)
                    .map(|(k, _)| (key(k), ChangeKind::Added))
                    .collect(),
            });
            for (i, (changes, adds)) in later.into_iter().enumerate() {
                let mut declared = BTreeMap::new();
                for (j, k) in KEYS.iter().enumerate() {
                    if active[j] {
                        declared.insert(key(k), changes[j]);
                        active[j] = changes[j] != ChangeKind::Removed;
                    } else if adds[j] {
                        declared.insert(key(k), ChangeKind::Added);
                        active[j] = true;
                    }
                }
                versions.push(PublishedVersion {
                    number: i as u32 + 2,
                    effective_from: hour(100 * (i as i64 + 2)),
                    changes: declared,
                });
            }
            versions
        })
}

#[derive(Debug, Clone)]
struct RawEvent {
    kind: u8,
    hour: i64,
    picks: Vec<(bool, bool)>,
    by_proxy: bool,
}

fn raw_events() -> impl Strategy<Value = Vec<RawEvent>> {
    prop::collection::vec(
        (
            0u8..4,
            90i64..560,
            prop::collection::vec((any::<bool>(), any::<bool>()), 4),
            any::<bool>(),
        )
            .prop_map(|(kind, hour, picks, by_proxy)| RawEvent {
                kind,
                hour,
                picks,
                by_proxy,
            }),
        0..14,
    )
}

/// Turns raw draws into events that respect the write-side rules: each is
/// signed on the version in force when it was signed, and names only items
/// of that version.
fn realize(history: &VersionHistory, raw: &[RawEvent]) -> Vec<ConsentEvent> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let version = history.in_force_at(hour(r.hour))?;
            let items: Vec<&ScopeItemKey> = version
                .changes
                .iter()
                .filter(|(_, c)| **c != ChangeKind::Removed)
                .map(|(k, _)| k)
                .collect();
            let decide = |permit: bool| {
                if permit {
                    Decision::Permit
                } else {
                    Decision::Deny
                }
            };
            let (kind, decisions) = match r.kind {
                0 => (
                    EventKind::Grant,
                    items
                        .iter()
                        .zip(&r.picks)
                        .map(|(k, (_, p))| ((*k).clone(), decide(*p)))
                        .collect(),
                ),
                1 => (
                    EventKind::Amend,
                    items
                        .iter()
                        .zip(&r.picks)
                        .filter(|(_, (pick, _))| *pick)
                        .map(|(k, (_, p))| ((*k).clone(), decide(*p)))
                        .collect(),
                ),
                2 => (
                    EventKind::WithdrawItems,
                    items
                        .iter()
                        .zip(&r.picks)
                        .filter(|(_, (pick, _))| *pick)
                        .map(|(k, _)| ((*k).clone(), Decision::Deny))
                        .collect(),
                ),
                _ => (EventKind::WithdrawAll, Vec::new()),
            };
            Some(ConsentEvent {
                id: format!("e{i:02}"),
                kind,
                version: version.number,
                signed_at: hour(r.hour),
                recorded_at: hour(r.hour),
                decisions,
                by_proxy: r.by_proxy,
            })
        })
        .collect()
}

/// The reference: for each item of the version in force, find the latest
/// event that speaks about it, then check every version in between.
fn reference(
    events: &[ConsentEvent],
    versions: &[PublishedVersion],
    at: DateTime<Utc>,
) -> BTreeMap<ScopeItemKey, Decision> {
    let Some(current) = versions
        .iter()
        .filter(|v| v.effective_from <= at)
        .max_by_key(|v| v.number)
    else {
        return BTreeMap::new();
    };
    let mut in_time: Vec<&ConsentEvent> = events.iter().filter(|e| e.signed_at <= at).collect();
    in_time.sort_by(|a, b| {
        (a.signed_at, a.recorded_at, &a.id).cmp(&(b.signed_at, b.recorded_at, &b.id))
    });
    let mut out = BTreeMap::new();
    for (k, change) in &current.changes {
        if *change == ChangeKind::Removed {
            continue;
        }
        let mut verdict = Decision::Deny;
        for (index, e) in in_time.iter().enumerate().rev() {
            // An amendment or partial withdrawal counts only if the nearest
            // grant-or-withdrawal before it is a grant.
            let under_grant = || {
                in_time[..index]
                    .iter()
                    .rev()
                    .find(|p| matches!(p.kind, EventKind::Grant | EventKind::WithdrawAll))
                    .is_some_and(|p| p.kind == EventKind::Grant)
            };
            if matches!(e.kind, EventKind::Amend | EventKind::WithdrawItems) && !under_grant() {
                continue;
            }
            let mentioned = e.decisions.iter().find(|(dk, _)| dk == k).map(|(_, d)| *d);
            let found = match e.kind {
                EventKind::WithdrawAll => Some(None),
                EventKind::Grant => Some(mentioned.map(|d| (d, e.version))),
                EventKind::Amend => mentioned.map(|d| Some((d, e.version))),
                EventKind::WithdrawItems => mentioned.map(|_| None),
            };
            if let Some(found) = found {
                if let Some((Decision::Permit, signed_on)) = found {
                    let still_valid = versions
                        .iter()
                        .filter(|v| v.number > signed_on && v.number <= current.number)
                        .all(|v| {
                            matches!(
                                v.changes.get(k),
                                Some(ChangeKind::Unchanged | ChangeKind::Editorial)
                            )
                        });
                    if still_valid {
                        verdict = Decision::Permit;
                    }
                }
                break;
            }
        }
        out.insert(k.clone(), verdict);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn matches_the_reference_model(versions in history_strategy(), raw in raw_events(), query in 80i64..600) {
        let history = VersionHistory::new(versions.clone());
        let events = realize(&history, &raw);
        let snapshot = derive_consent(&events, &history, hour(query));
        let derived: BTreeMap<_, _> = snapshot.items.iter().map(|i| (i.key.clone(), i.decision)).collect();
        prop_assert_eq!(derived, reference(&events, &versions, hour(query)));
    }

    #[test]
    fn as_of_ignores_later_events_and_input_order(versions in history_strategy(), raw in raw_events(), query in 80i64..600, extra in raw_events()) {
        let history = VersionHistory::new(versions);
        let events = realize(&history, &raw);
        let snapshot = derive_consent(&events, &history, hour(query));
        // Events signed after the query time change nothing about it.
        let mut more = events.clone();
        more.extend(realize(&history, &extra).into_iter().filter(|e| e.signed_at > hour(query)).map(|mut e| { e.id = format!("x{}", e.id); e }));
        prop_assert_eq!(&derive_consent(&more, &history, hour(query)), &snapshot);
        // Nor does the order in which storage hands them over.
        let mut reversed = events.clone();
        reversed.reverse();
        prop_assert_eq!(&derive_consent(&reversed, &history, hour(query)), &snapshot);
    }

    #[test]
    fn deny_by_default_and_after_withdrawal(versions in history_strategy(), raw in raw_events(), query in 80i64..600) {
        let history = VersionHistory::new(versions);
        let events = realize(&history, &raw);
        let snapshot = derive_consent(&events, &history, hour(query));
        let mut in_time: Vec<_> = events.iter().filter(|e| e.signed_at <= hour(query)).collect();
        in_time.sort_by_key(|e| (e.signed_at, e.id.clone()));
        let last_reset = in_time.iter().rev().find(|e| matches!(e.kind, EventKind::Grant | EventKind::WithdrawAll));
        match last_reset.map(|e| e.kind) {
            None => prop_assert!(snapshot.items.iter().all(|i| i.decision == Decision::Deny), "nothing granted, nothing permitted"),
            Some(EventKind::WithdrawAll) => {
                prop_assert_eq!(snapshot.status, ConsentStatus::Withdrawn);
                prop_assert!(snapshot.items.iter().all(|i| i.decision == Decision::Deny));
            }
            _ => prop_assert_eq!(snapshot.status, ConsentStatus::Active),
        }
        // Exactly the items of the version in force are answered.
        if let Some(current) = history.in_force_at(hour(query)) {
            let expected: Vec<_> = current.changes.iter().filter(|(_, c)| **c != ChangeKind::Removed).map(|(k, _)| k.clone()).collect();
            let got: Vec<_> = snapshot.items.iter().map(|i| i.key.clone()).collect();
            prop_assert_eq!(got, expected);
        } else {
            prop_assert!(snapshot.items.is_empty());
        }
    }

    /// A permit lapses at majority only if the person is of age at the
    /// query, it was permitted at all, and a proxy signed something about
    /// it while the person was a minor; the patient's own events never
    /// lapse, and lapsing changes no decision of the record itself.
    #[test]
    fn only_a_minors_proxy_permits_lapse(versions in history_strategy(), raw in raw_events(), query in 80i64..600, majority_hour in 0i64..700) {
        let history = VersionHistory::new(versions);
        let events = realize(&history, &raw);
        let person = Person { majority_on: Some(day_of(hour(majority_hour))), deceased_on: None };
        let snapshot = derive_consent(&events, &history, hour(query));
        let of_age = person.of_age_on(day_of(hour(query)));
        for item in snapshot.lapsed_at_majority(&person) {
            prop_assert!(of_age);
            prop_assert_eq!(item.decision, Decision::Permit);
            prop_assert!(events.iter().any(|e| e.by_proxy
                && e.signed_at <= hour(query)
                && person.minor_on(day_of(e.signed_at))
                && e.decisions.iter().any(|(k, d)| k == &item.key && *d == Decision::Permit)));
        }
        let by_patient: Vec<ConsentEvent> = events.iter().cloned().map(|e| ConsentEvent { by_proxy: false, ..e }).collect();
        let own = derive_consent(&by_patient, &history, hour(query));
        prop_assert_eq!(own.lapsed_at_majority(&person).count(), 0);
        let decisions = |s: &genomegate::consent::ConsentSnapshot| s.items.iter().map(|i| (i.key.clone(), i.decision)).collect::<Vec<_>>();
        prop_assert_eq!(decisions(&own), decisions(&snapshot));
    }
}
