use super::*;
use crate::consent::document::PublishedVersion;

fn key(k: &str) -> ScopeItemKey {
    ScopeItemKey::parse(k).unwrap()
}
fn at(hour: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(hour * 3600, 0).unwrap()
}
fn event(
    id: &str,
    kind: EventKind,
    version: u32,
    hour: i64,
    d: &[(&str, Decision)],
) -> ConsentEvent {
    ConsentEvent {
        id: id.into(),
        kind,
        version,
        signed_at: at(hour),
        recorded_at: at(hour),
        decisions: d.iter().map(|(k, d)| (key(k), *d)).collect(),
        by_proxy: false,
    }
}
/// Version 1 at hour 10: academic and industry use permitted,
/// recontact denied.
fn first_grant() -> ConsentEvent {
    use Decision::*;
    event(
        "e1",
        EventKind::Grant,
        1,
        10,
        &[
            ("academic", Permit),
            ("industry", Permit),
            ("recontact", Deny),
        ],
    )
}
fn history() -> VersionHistory {
    use ChangeKind::*;
    let v = |n, from, changes: &[(&str, ChangeKind)]| PublishedVersion {
        number: n,
        effective_from: at(from),
        changes: changes.iter().map(|(k, c)| (key(k), *c)).collect(),
    };
    VersionHistory::new(vec![
        v(
            1,
            0,
            &[
                ("academic", Added),
                ("industry", Added),
                ("recontact", Added),
            ],
        ),
        v(
            2,
            100,
            &[
                ("academic", Editorial),
                ("industry", Material),
                ("recontact", Unchanged),
                ("banking", Added),
            ],
        ),
    ])
}

#[test]
fn carry_forward_reconsent_and_as_of() {
    use Decision::*;
    let events = vec![first_grant()];
    let before = derive_consent(&events, &history(), at(50));
    assert_eq!(before.version_in_force, Some(1));
    assert!(before.permits(&key("industry")));

    let after = derive_consent(&events, &history(), at(150));
    assert_eq!(after.version_in_force, Some(2));
    assert!(after.permits(&key("academic")), "editorial carries forward");
    assert!(matches!(
        after.item(&key("academic")).unwrap().basis,
        ItemBasis::CarriedForward { .. }
    ));
    assert!(
        !after.permits(&key("industry")),
        "material needs re-consent"
    );
    assert!(matches!(
        after.item(&key("industry")).unwrap().basis,
        ItemBasis::NeedsReconsent {
            changed_in_version: 2,
            change: ChangeKind::Material,
            ..
        }
    ));
    assert_eq!(
        after.item(&key("banking")).unwrap().basis,
        ItemBasis::NotAsked
    );
    assert_eq!(after.item(&key("recontact")).unwrap().decision, Deny);

    // Re-consent only the material item, on the new version.
    let mut events = events;
    events.push(event(
        "e2",
        EventKind::Amend,
        2,
        160,
        &[("industry", Permit)],
    ));
    let reconsented = derive_consent(&events, &history(), at(170));
    assert!(reconsented.permits(&key("industry")));
    assert!(reconsented.permits(&key("academic")));
    // ...and the past is still answerable.
    assert!(!derive_consent(&events, &history(), at(155)).permits(&key("industry")));
}

/// Cohort checks load only the items they decide on; that is sound
/// because no item's state depends on another item's decisions.
#[test]
fn an_items_state_does_not_depend_on_other_items() {
    use Decision::*;
    let events = vec![
        first_grant(),
        event(
            "e2",
            EventKind::WithdrawItems,
            1,
            20,
            &[("recontact", Deny)],
        ),
        event("e3", EventKind::Amend, 2, 160, &[("banking", Permit)]),
        event("e4", EventKind::WithdrawAll, 2, 300, &[]),
        event("e5", EventKind::Grant, 2, 400, &[("industry", Permit)]),
    ];
    for item in ["academic", "industry", "recontact", "banking"] {
        let only: Vec<ConsentEvent> = events
            .iter()
            .map(|e| ConsentEvent {
                decisions: e
                    .decisions
                    .iter()
                    .filter(|(k, _)| *k == key(item))
                    .map(|(k, d)| (k.clone(), *d))
                    .collect(),
                ..e.clone()
            })
            .collect();
        for hour in [5, 15, 50, 150, 170, 350, 450] {
            let full = derive_consent(&events, &history(), at(hour));
            let lean = derive_consent(&only, &history(), at(hour));
            assert_eq!(full.status, lean.status, "{item} at {hour}");
            assert_eq!(
                full.item(&key(item)),
                lean.item(&key(item)),
                "{item} at {hour}"
            );
        }
    }
}

#[test]
fn withdrawal_denies_everything_until_a_new_grant() {
    use Decision::*;
    let events = vec![
        event(
            "e1",
            EventKind::Grant,
            1,
            1,
            &[
                ("academic", Permit),
                ("industry", Permit),
                ("recontact", Permit),
            ],
        ),
        event("e2", EventKind::WithdrawItems, 1, 2, &[("industry", Deny)]),
        event("e3", EventKind::WithdrawAll, 1, 3, &[]),
    ];
    let s = derive_consent(&events, &history(), at(2));
    assert!(s.permits(&key("academic")));
    assert!(!s.permits(&key("industry")));
    let s = derive_consent(&events, &history(), at(4));
    assert_eq!(s.status, ConsentStatus::Withdrawn);
    assert!(s.items.iter().all(|i| i.decision == Deny));
}

#[test]
fn a_proxys_permits_for_a_minor_lapse_when_the_minor_comes_of_age() {
    use Decision::*;
    let by_proxy = |mut e: ConsentEvent| {
        e.by_proxy = true;
        e
    };
    // A parent signs at hour 10; the child comes of age on day 3 (hour 48).
    let child = Person {
        majority_on: chrono::NaiveDate::from_ymd_opt(1970, 1, 3),
        deceased_on: None,
    };
    let lapsed = |events: &[ConsentEvent], hour| -> Vec<String> {
        derive_consent(events, &history(), at(hour))
            .lapsed_at_majority(&child)
            .map(|i| i.key.to_string())
            .collect()
    };
    let mut events = vec![by_proxy(first_grant())];
    assert!(lapsed(&events, 30).is_empty(), "a minor: the proxy speaks");
    assert_eq!(
        lapsed(&events, 50),
        ["academic", "industry"],
        "of age: the permits lapse, the deny stays a deny"
    );
    assert!(
        derive_consent(&events, &history(), at(50))
            .lapsed_at_majority(&child)
            .all(|i| i.basis.signed_on_version() == Some(1)),
        "each lapsed permit names the version the proxy signed"
    );
    assert!(
        derive_consent(&events, &history(), at(50)).permits(&key("academic")),
        "the record itself is unchanged"
    );
    assert!(
        derive_consent(&events, &history(), at(50))
            .lapsed_at_majority(&Person::default())
            .next()
            .is_none(),
        "nobody recorded as a minor: nothing lapses"
    );

    // The person's own answer on one item replaces the proxy's.
    events.push(event(
        "e2",
        EventKind::Amend,
        1,
        60,
        &[("industry", Permit)],
    ));
    assert_eq!(lapsed(&events, 70), ["academic"]);
    // A proxy signing for the adult (a guardian) is not a minor's proxy.
    events.push(by_proxy(event(
        "e3",
        EventKind::Amend,
        1,
        80,
        &[("academic", Permit)],
    )));
    assert!(lapsed(&events, 90).is_empty());
    // ...and the past is still answerable.
    assert_eq!(lapsed(&events, 55), ["academic", "industry"]);
}

#[test]
fn nothing_before_the_first_version_or_event() {
    let s = derive_consent(&[], &history(), at(5));
    assert_eq!(s.status, ConsentStatus::None);
    assert!(s.items.iter().all(|i| i.basis == ItemBasis::NotAsked));
    let s = derive_consent(&[], &VersionHistory::default(), at(5));
    assert!(s.items.is_empty());
}
