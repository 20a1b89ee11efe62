use super::*;
use crate::auth::{Principal, Role};

fn engine() -> PolicyEngine {
    PolicyEngine::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
}
fn user(org: &str, roles: &[Role]) -> Caller {
    Caller::User(Principal {
        subject: "u1".into(),
        org: org.into(),
        roles: roles.to_vec(),
        patient_ref: None,
    })
}

/// Requests skip the schema check of their entities for speed, so every
/// shape `entities_of` builds is checked against the schema here.
#[test]
fn every_entity_a_request_builds_conforms_to_the_schema() {
    let e = engine();
    let centers = vec!["seq-center".to_owned()];
    let partners = vec!["univ-b".to_owned()];
    let resources = [
        Resource::Document {
            id: "cancer-v1",
            status: "active",
        },
        Resource::Patient {
            pseudonym: "p",
            hospital: "hosp-a",
            centers: &centers,
        },
        Resource::Hospital { org: "hosp-a" },
        Resource::AccessLog,
        Resource::Registry,
        Resource::Application {
            id: "app-1",
            org: "pharma",
            partner_orgs: &partners,
        },
    ];
    let patient = Caller::User(Principal {
        subject: "patient-1".into(),
        org: "hosp-a".into(),
        roles: vec![Role::Patient],
        patient_ref: Some("p".into()),
    });
    let callers = [
        Caller::Anonymous,
        user("hosp-a", &[Role::HospitalStaff, Role::Auditor]),
        patient,
    ];
    for caller in &callers {
        for resource in &resources {
            let (principal, resource_entity) = e.entities_of(caller, resource).unwrap();
            Entities::from_entities([principal, resource_entity], Some(&e.schema))
                .unwrap_or_else(|err| panic!("{caller:?} on {resource:?}: {err}"));
        }
    }
}

#[test]
fn actions_index_their_place_in_all() {
    for (i, action) in Action::ALL.iter().enumerate() {
        assert_eq!(action.index(), i, "{action:?}");
    }
}

/// Each action is decided on its own slice of the policies; for every
/// action, every kind of caller and every kind of resource, the slice
/// decides exactly as the whole set does.
#[test]
fn a_decision_on_the_actions_slice_equals_the_decision_on_every_policy() {
    let e = engine();
    let centers = vec!["hosp-b".to_owned()];
    let partners = vec!["hosp-b".to_owned()];
    let resources = [
        Resource::Document {
            id: "cancer-v1",
            status: "active",
        },
        Resource::Document {
            id: "cancer-v2",
            status: "draft",
        },
        Resource::Patient {
            pseudonym: "p",
            hospital: "hosp-a",
            centers: &centers,
        },
        Resource::Hospital { org: "hosp-a" },
        Resource::AccessLog,
        Resource::Registry,
        Resource::Application {
            id: "app-1",
            org: "hosp-a",
            partner_orgs: &partners,
        },
    ];
    let mut callers = vec![Caller::Anonymous];
    for role in Role::ALL {
        for org in ["hosp-a", "hosp-b"] {
            callers.push(Caller::User(Principal {
                subject: "u1".into(),
                org: org.into(),
                roles: vec![role],
                patient_ref: (role == Role::Patient).then(|| "p".into()),
            }));
        }
    }
    let (mut checked, mut allowed) = (0, 0);
    for action in Action::ALL {
        for caller in &callers {
            for resource in &resources {
                // Actions named with the wrong kind of resource are
                // refused before any policy is read.
                let Ok((request, entities)) = e.request_of(caller, action, resource) else {
                    continue;
                };
                let whole = e.authorizer.is_authorized(&request, &e.policies, &entities);
                let sliced = e.is_allowed(caller, action, resource);
                assert_eq!(
                    sliced,
                    whole.decision() == Decision::Allow,
                    "{action:?} by {caller:?} on {resource:?}"
                );
                checked += 1;
                allowed += usize::from(sliced);
            }
        }
    }
    assert!(
        checked > 200 && allowed > 20,
        "{checked} checked, {allowed} allowed"
    );
}

/// Requests carry no action hierarchy, so a policy on an action group
/// would never match its members; such a schema stops start-up instead
/// of quietly denying.
#[test]
fn a_schema_with_action_groups_stops_start_up() {
    let schema = r#"
        namespace GenomeGate {
          entity User = { "org": String, "roles": Set<String>, "patient_ref"?: String };
          entity Patient = { "pseudonym": String, "hospital": String, "sequencing_centers": Set<String> };
          action "reads";
          action "consent.read" in ["reads"] appliesTo { principal: [User], resource: [Patient] };
        }"#;
    let policy = r#"permit(principal, action in [GenomeGate::Action::"reads"], resource)
        when { resource.hospital == principal.org };"#;
    let err =
        PolicyEngine::from_sources(schema, &[("group.cedar".into(), policy.into())]).unwrap_err();
    assert!(err.contains("action groups"), "{err}");
}

#[test]
fn shipped_policies_validate_and_deny_by_default() {
    let e = engine();
    let patient = Resource::Patient {
        pseudonym: "p",
        hospital: "hosp-a",
        centers: &[],
    };
    assert!(e.is_allowed(
        &user("hosp-a", &[Role::HospitalStaff]),
        Action::ConsentRead,
        &patient
    ));
    assert!(!e.is_allowed(
        &user("hosp-b", &[Role::HospitalStaff]),
        Action::ConsentRead,
        &patient
    ));
    assert!(
        !e.is_allowed(&user("hosp-a", &[]), Action::ConsentRead, &patient),
        "no role, no access"
    );
    assert!(e.is_allowed(
        &user("audit", &[Role::Auditor]),
        Action::ConsentRead,
        &patient
    ));
    assert!(
        !e.is_allowed(
            &user("audit", &[Role::Auditor]),
            Action::ConsentWithdraw,
            &patient
        ),
        "auditors are read-only"
    );
    assert!(
        !e.is_allowed(
            &user("audit", &[Role::Auditor]),
            Action::ConsentWithdrawOwn,
            &patient
        ),
        "only the patient withdraws their own"
    );
    assert!(!e.is_allowed(&Caller::Anonymous, Action::ConsentRead, &patient));
    let draft = Resource::Document {
        id: "cancer-v2",
        status: "draft",
    };
    let active = Resource::Document {
        id: "cancer-v1",
        status: "active",
    };
    assert!(e.is_allowed(&Caller::Anonymous, Action::DocumentReadPublished, &active));
    assert!(!e.is_allowed(&Caller::Anonymous, Action::DocumentReadPublished, &draft));
    assert!(e.is_allowed(
        &user("gov", &[Role::ConsentAdmin]),
        Action::DocumentPublish,
        &draft
    ));
    assert!(!e.is_allowed(
        &user("hosp-a", &[Role::HospitalStaff]),
        Action::DocumentPublish,
        &draft
    ));
}

#[test]
fn a_policy_that_does_not_match_the_schema_stops_start_up() {
    let schema = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("policies")
            .join(SCHEMA_FILE),
    )
    .unwrap();
    let bad = "permit(principal, action == GenomeGate::Action::\"consent.read\", resource) when { resource.owner == \"x\" };";
    let err = PolicyEngine::from_sources(&schema, &[("bad.cedar".into(), bad.into())]).unwrap_err();
    assert!(err.contains("do not validate"), "{err}");
}

#[test]
fn only_actions_the_schema_opens_to_anonymous_callers_admit_them() {
    let e = engine();
    let open: Vec<Action> = Action::ALL
        .into_iter()
        .filter(|a| e.admits_anonymous(*a))
        .collect();
    assert!(open.contains(&Action::DocumentReadPublished), "{open:?}");
    assert!(!open.contains(&Action::DatasetRead), "{open:?}");
    // An anonymous caller of any other action is refused without a request
    // being built, so no fault is reported for a refusal.
    for action in Action::ALL.into_iter().filter(|a| !open.contains(a)) {
        assert!(!e.is_allowed(&Caller::Anonymous, action, &Resource::Registry));
        assert!(e
            .decide(&Caller::Anonymous, action, &Resource::Registry)
            .is_err());
    }
}
