use super::*;
use crate::ledger::entry::{Actor, DataScope, ENTRY_FORMAT};
use chrono::TimeZone;

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, 9, 0, 0)
        .single()
        .unwrap_or_default()
}

fn entry(
    org: &str,
    role: &str,
    action: LogAction,
    purpose: Purpose,
    basis: LegalBasis,
) -> LogEntry {
    LogEntry {
        format: ENTRY_FORMAT,
        at: at(10),
        actor: Actor {
            org: org.into(),
            role: role.into(),
            user: format!("{org}-user"),
        },
        action,
        purpose,
        legal_basis: basis,
        patient: "p1".into(),
        scope: DataScope::PatientSummary,
    }
}

fn facts() -> Facts {
    let mut f = Facts::default();
    f.patient_hospital.insert("p1".into(), "hospital-a".into());
    f.consents.insert(("p1".into(), "cancer-v1".into()));
    f.recontact.insert(
        "r-pending".into(),
        RecontactFacts {
            patient: "p1".into(),
            state: "pending".into(),
        },
    );
    f.recontact.insert(
        "r-approved".into(),
        RecontactFacts {
            patient: "p1".into(),
            state: "approved".into(),
        },
    );
    f.agreements.insert(
        "dua-1".into(),
        AgreementTerms {
            orgs: vec!["pharma-x".into(), "univ-partner".into()],
            purposes: vec!["HMB".into()],
            starts_at: at(1),
            ends_at: at(20),
            halted: vec![],
            audiences: vec!["store-1".into()],
        },
    );
    f
}

fn treating(h: &str) -> LegalBasis {
    LegalBasis::TreatingHospital { hospital: h.into() }
}

fn research(duo: &str) -> Purpose {
    Purpose::Research { duo: duo.into() }
}

fn agreement(id: &str) -> LegalBasis {
    LegalBasis::Agreement { id: id.into() }
}

fn reason(e: &LogEntry, f: &Facts) -> Option<&'static str> {
    check(e, f).err().map(|(_, r)| r)
}

/// An entry of `action` for managing the patient's consent.
fn managing(action: LogAction) -> impl Fn(&str, &str, LegalBasis) -> LogEntry {
    move |org, role, basis| entry(org, role, action, Purpose::ConsentManagement, basis)
}

#[test]
fn treating_hospital_reads_need_the_patients_own_hospital_staff() {
    let f = facts();
    let read = managing(LogAction::ConsentRead);
    assert_eq!(
        reason(
            &read("hospital-a", "hospital_staff", treating("hospital-a")),
            &f
        ),
        None
    );
    assert_eq!(
        reason(
            &read("hospital-b", "hospital_staff", treating("hospital-b")),
            &f
        ),
        Some("not_the_patients_hospital")
    );
    assert_eq!(
        reason(
            &read("hospital-b", "hospital_staff", treating("hospital-a")),
            &f
        ),
        Some("actor_not_staff_of_the_treating_hospital")
    );
    assert_eq!(
        reason(&read("gov", "auditor", LegalBasis::Oversight), &f),
        None
    );
    assert_eq!(
        reason(&read("gov", "researcher", LegalBasis::Oversight), &f),
        Some("oversight_by_a_non_auditor")
    );
    // Unknown patients have no hospital to act for.
    let mut stranger = read("hospital-a", "hospital_staff", treating("hospital-a"));
    stranger.patient = "p-unknown".into();
    assert_eq!(reason(&stranger, &f), Some("not_the_patients_hospital"));
}

#[test]
fn status_changes_are_the_treating_hospitals_and_never_an_auditors() {
    let f = facts();
    let change = managing(LogAction::PatientStatusChange);
    assert_eq!(
        reason(
            &change("hospital-a", "hospital_staff", treating("hospital-a")),
            &f
        ),
        None
    );
    assert_eq!(
        reason(
            &change("hospital-b", "hospital_staff", treating("hospital-b")),
            &f
        ),
        Some("not_the_patients_hospital")
    );
    assert_eq!(
        reason(&change("gov", "auditor", LegalBasis::Oversight), &f),
        Some("basis_not_allowed_for_action")
    );
}

#[test]
fn consent_changes_must_cite_a_recorded_consent() {
    let f = facts();
    let change = |version: &str| {
        entry(
            "hospital-a",
            "hospital_staff",
            LogAction::ConsentChange,
            Purpose::ConsentManagement,
            LegalBasis::Consent {
                version: version.into(),
                items: vec![],
            },
        )
    };
    assert_eq!(reason(&change("cancer-v1"), &f), None);
    assert_eq!(
        reason(&change("cancer-v9"), &f),
        Some("no_consent_recorded_on_the_cited_version")
    );
}

#[test]
fn a_lapse_at_majority_is_the_services_own_and_cites_a_recorded_consent() {
    let f = facts();
    let lapse = |org: &str, role: &str, version: &str| {
        entry(
            org,
            role,
            LogAction::ConsentLapse,
            Purpose::ConsentManagement,
            LegalBasis::Consent {
                version: version.into(),
                items: vec!["research_industry".into()],
            },
        )
    };
    assert_eq!(
        reason(&lapse("genomegate", SERVICE_ROLE, "cancer-v1"), &f),
        None
    );
    assert_eq!(
        reason(&lapse("genomegate", SERVICE_ROLE, "cancer-v9"), &f),
        Some("no_consent_recorded_on_the_cited_version")
    );
    // A hospital's staff cannot write what only the service records.
    assert_eq!(
        reason(&lapse("hospital-a", "hospital_staff", "cancer-v1"), &f),
        Some("lapse_not_recorded_by_the_service")
    );
    let under_a_hospital = entry(
        "genomegate",
        SERVICE_ROLE,
        LogAction::ConsentLapse,
        Purpose::ConsentManagement,
        treating("hospital-a"),
    );
    assert_eq!(
        reason(&under_a_hospital, &f),
        Some("basis_not_allowed_for_action")
    );
}

#[test]
fn unsealing_needs_an_approved_request_for_the_same_patient() {
    let f = facts();
    let step = |action, request: &str| {
        entry(
            "hospital-a",
            "hospital_staff",
            action,
            Purpose::Recontact,
            LegalBasis::RecontactApproval {
                request: request.into(),
            },
        )
    };
    assert_eq!(
        reason(&step(LogAction::RecontactOpen, "r-pending"), &f),
        None
    );
    assert_eq!(
        reason(&step(LogAction::RecontactUnseal, "r-pending"), &f),
        Some("unsealed_without_approval")
    );
    assert_eq!(
        reason(&step(LogAction::RecontactUnseal, "r-approved"), &f),
        None
    );
    assert_eq!(
        reason(&step(LogAction::RecontactUnseal, "r-none"), &f),
        Some("unknown_recontact_request")
    );
    let mut other = step(LogAction::RecontactOpen, "r-pending");
    other.patient = "p2".into();
    assert_eq!(
        reason(&other, &f),
        Some("recontact_request_for_another_patient")
    );
}

#[test]
fn releases_must_stay_inside_their_agreement() {
    let mut f = facts();
    let release = |duo: &str, basis| {
        entry(
            "pharma-x",
            "researcher",
            LogAction::DatasetRelease,
            research(duo),
            basis,
        )
    };
    assert_eq!(check(&release("HMB", agreement("dua-1")), &f), Ok(()));
    assert_eq!(
        check(&release("POA", agreement("dua-1")), &f),
        Err((Rule::OutsideAgreementPurpose, "purpose_not_in_agreement"))
    );
    assert_eq!(
        reason(&release("HMB", agreement("dua-404")), &f),
        Some("unknown_agreement")
    );
    let mut late = release("HMB", agreement("dua-1"));
    late.at = at(25);
    assert_eq!(
        check(&late, &f),
        Err((Rule::OutsideAgreementPeriod, "outside_agreement_period"))
    );
    // A suspension lifted before the entry does not count against it.
    if let Some(terms) = f.agreements.get_mut("dua-1") {
        terms.halted = vec![(at(3), Some(at(4)))];
    }
    assert_eq!(check(&release("HMB", agreement("dua-1")), &f), Ok(()));
    if let Some(terms) = f.agreements.get_mut("dua-1") {
        terms.halted.push((at(5), None));
    }
    assert_eq!(
        check(&release("HMB", agreement("dua-1")), &f),
        Err((
            Rule::OutsideAgreementPeriod,
            "agreement_suspended_or_revoked"
        ))
    );
    let mut borrowed = release("HMB", agreement("dua-1"));
    borrowed.actor.org = "other-co".into();
    assert_eq!(
        reason(&borrowed, &f),
        Some("agreement_of_another_organization")
    );
    // A partner organization's member releases under the agreement too.
    let mut by_partner = release("HMB", agreement("dua-1"));
    by_partner.actor.org = "univ-partner".into();
    assert_eq!(reason(&by_partner, &facts()), None);
    // A release under a hospital's treating role is no release basis.
    assert_eq!(
        reason(&release("HMB", treating("hospital-a")), &f),
        Some("basis_not_allowed_for_action")
    );
}

#[test]
fn an_actor_far_above_the_median_is_unusual() {
    let f = facts();
    let rule = VolumeRule {
        factor: 5.0,
        floor: 10,
    };
    let mut screener = Screener::new(at(1), at(2), rule);
    let mut seq = 0;
    let mut read_by = |s: &mut Screener, user: &str, times: usize| {
        for _ in 0..times {
            let mut e = entry(
                "hospital-a",
                "hospital_staff",
                LogAction::ConsentRead,
                Purpose::ConsentManagement,
                treating("hospital-a"),
            );
            e.actor.user = user.into();
            seq += 1;
            s.observe(seq, &e, &f);
        }
    };
    for user in ["a", "b", "c", "d"] {
        read_by(&mut screener, user, 4);
    }
    read_by(&mut screener, "e", 9); // busier than most, below 5 × the median
    read_by(&mut screener, "bulk", 40);
    // Fifty patients come of age on one day: the service tells each.
    for _ in 0..50 {
        let lapse = entry(
            "genomegate",
            SERVICE_ROLE,
            LogAction::ConsentLapse,
            Purpose::ConsentManagement,
            LegalBasis::Consent {
                version: "cancer-v1".into(),
                items: vec![],
            },
        );
        seq += 1;
        screener.observe(seq, &lapse, &f);
    }
    let report = screener.finish();
    assert_eq!(report.entries_screened, 4 * 4 + 9 + 40 + 50);
    assert_eq!(report.actors, 6, "the service is no actor of its own");
    assert_eq!(report.median_accesses_per_actor, 4.0);
    assert_eq!(report.unusual_volume.len(), 1);
    assert_eq!(report.unusual_volume[0].user, "bulk");
    assert_eq!(report.unusual_volume[0].threshold, 20.0);
    assert!(report.findings.is_empty());
}

#[test]
fn the_floor_keeps_quiet_periods_quiet() {
    let rule = VolumeRule {
        factor: 2.0,
        floor: 100,
    };
    let mut screener = Screener::new(at(1), at(2), rule);
    let f = facts();
    for (seq, user) in ["a", "b", "b", "b", "b", "b"].iter().enumerate() {
        let mut e = entry(
            "hospital-a",
            "hospital_staff",
            LogAction::ConsentRead,
            Purpose::ConsentManagement,
            treating("hospital-a"),
        );
        e.actor.user = (*user).into();
        screener.observe(seq as i64, &e, &f);
    }
    assert!(screener.finish().unusual_volume.is_empty());
}

#[test]
fn findings_are_capped_but_counted() {
    let f = facts();
    let rule = VolumeRule {
        factor: 10.0,
        floor: 1_000_000,
    };
    let mut screener = Screener::new(at(1), at(2), rule);
    let bad = entry(
        "hospital-b",
        "hospital_staff",
        LogAction::ConsentRead,
        Purpose::ConsentManagement,
        treating("hospital-b"),
    );
    for seq in 0..(MAX_FINDINGS as i64 + 5) {
        screener.observe(seq, &bad, &f);
    }
    let report = screener.finish();
    assert_eq!(report.findings.len(), MAX_FINDINGS);
    assert!(report.findings_truncated);
    assert_eq!(
        report.counts.get(&Rule::NoValidLegalBasis),
        Some(&(MAX_FINDINGS as u64 + 5))
    );
}

#[test]
fn enquiries_are_opened_and_answered_only_by_those_they_go_to() {
    let mut f = facts();
    for (id, kind) in [
        ("q-1", EnquiryKind::Question),
        ("w-1", EnquiryKind::WrongAccess),
    ] {
        f.enquiries.insert(
            id.into(),
            EnquiryFacts {
                patient: "p1".into(),
                hospital: "hospital-a".into(),
                kind,
            },
        );
    }
    let handled = |org: &str, role: &str, action: LogAction, enquiry: &str| {
        entry(
            org,
            role,
            action,
            Purpose::Enquiry,
            LegalBasis::PatientEnquiry {
                enquiry: enquiry.into(),
            },
        )
    };
    let read = LogAction::EnquiryRead;
    let answer = LogAction::EnquiryAnswer;
    assert_eq!(
        reason(&handled("hospital-a", "hospital_staff", read, "q-1"), &f),
        None
    );
    assert_eq!(
        reason(&handled("gov", "governance", answer, "w-1"), &f),
        None
    );
    // A question is the patient's hospital's; a report the governance
    // body's, even when the hospital is the patient's own.
    for (org, role, id) in [
        ("hospital-b", "hospital_staff", "q-1"),
        ("gov", "governance", "q-1"),
        ("hospital-a", "hospital_staff", "w-1"),
    ] {
        assert_eq!(
            reason(&handled(org, role, answer, id), &f),
            Some("enquiry_not_sent_to_the_actor"),
            "{org} {role} {id}"
        );
    }
    assert_eq!(
        reason(&handled("gov", "governance", read, "nope"), &f),
        Some("unknown_enquiry")
    );
    let mut other = handled("gov", "governance", read, "w-1");
    other.patient = "p2".into();
    assert_eq!(reason(&other, &f), Some("enquiry_of_another_patient"));
    // An enquiry cites no other action.
    let misused = entry(
        "hospital-a",
        "hospital_staff",
        LogAction::ConsentRead,
        Purpose::Enquiry,
        LegalBasis::PatientEnquiry {
            enquiry: "q-1".into(),
        },
    );
    assert_eq!(reason(&misused, &f), Some("basis_not_allowed_for_action"));
}
