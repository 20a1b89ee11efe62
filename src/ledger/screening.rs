//! The auditors' screening of the access log: which entries lack a valid
//! legal basis, which fall outside their agreement's purpose or period, and
//! which actors touched far more records than their peers.
//!
//! Pure: the caller feeds entries (in any order) with the facts they need,
//! then reads the report. The facts are what the service knows now; an
//! entry that cites a recontact request or agreement the service has never
//! heard of is flagged, because an auditor has nothing to check it against.

use super::entry::{LegalBasis, LogAction, LogEntry, Purpose, SERVICE_ROLE};
use crate::consent::enquiry::{EnquiryKind, Handler};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Bumped whenever a rule changes, so stored reports say which rules made
/// them.
pub const SCREENING_RULES_VERSION: &str = "screening/v3";

/// Findings kept in full per report; the counts cover the rest.
pub const MAX_FINDINGS: usize = 1000;

/// When an actor's volume counts as unusual: above both `floor` and
/// `factor` times the median volume of every actor in the period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct VolumeRule {
    pub factor: f64,
    pub floor: u64,
}

/// What the service knows about a recontact request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecontactFacts {
    pub patient: String,
    /// `pending`, `approved`, `rejected` or `unsealed`.
    pub state: String,
}

/// What the service knows about a patient's enquiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnquiryFacts {
    pub patient: String,
    /// The patient's hospital when they sent it.
    pub hospital: String,
    pub kind: EnquiryKind,
}

/// The terms of a data-use agreement that screening checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementTerms {
    /// The organizations whose researchers are members: the applicant
    /// first, then any partners.
    pub orgs: Vec<String>,
    /// The DUO purpose codes it allows.
    pub purposes: Vec<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Periods it was suspended or revoked: from, and until (`None`: still).
    pub halted: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)>,
    /// Genome stores its handles were issued to: they resolve them.
    pub audiences: Vec<String>,
}

/// Facts about the patients, consents, requests and agreements the
/// screened entries cite.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    /// Patient pseudonym → the hospital that registered them.
    pub patient_hospital: HashMap<String, String>,
    /// (patient pseudonym, document version) with a recorded consent event.
    pub consents: HashSet<(String, String)>,
    pub recontact: HashMap<String, RecontactFacts>,
    pub enquiries: HashMap<String, EnquiryFacts>,
    pub agreements: HashMap<String, AgreementTerms>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    NoValidLegalBasis,
    OutsideAgreementPurpose,
    OutsideAgreementPeriod,
}

/// One flagged entry. It names the entry, never the patient: the auditor
/// opens the entry itself through the audit log when needed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Arrival number of the entry (its tree index may not exist yet).
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub org: String,
    pub user: String,
    pub action: &'static str,
    pub rule: Rule,
    /// Stable, machine-readable reason, e.g. `basis_not_allowed_for_action`.
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActorVolume {
    pub org: String,
    pub user: String,
    pub accesses: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnusualVolume {
    pub org: String,
    pub user: String,
    pub accesses: u64,
    /// The volume above which an actor is flagged in this period.
    pub threshold: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScreeningReport {
    pub rules_version: &'static str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub entries_screened: u64,
    pub actors: u64,
    pub median_accesses_per_actor: f64,
    pub volume_rule: VolumeRule,
    /// Flagged entries per rule, including any beyond `findings`.
    pub counts: BTreeMap<Rule, u64>,
    /// The first `MAX_FINDINGS` flagged entries, oldest first.
    pub findings: Vec<Finding>,
    pub findings_truncated: bool,
    pub unusual_volume: Vec<UnusualVolume>,
}

/// Accumulates a report over entries fed in pages.
pub struct Screener {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    volume_rule: VolumeRule,
    entries: u64,
    volume: HashMap<(String, String), u64>,
    counts: BTreeMap<Rule, u64>,
    findings: Vec<Finding>,
}

impl Screener {
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>, volume_rule: VolumeRule) -> Self {
        Screener {
            from,
            to,
            volume_rule,
            entries: 0,
            volume: HashMap::new(),
            counts: BTreeMap::new(),
            findings: Vec::new(),
        }
    }

    pub fn observe(&mut self, seq: i64, entry: &LogEntry, facts: &Facts) {
        self.entries += 1;
        // The service's own entries (a day of majority passing for many
        // patients at once) are no one's accesses: they neither count as
        // an actor's volume nor move the median people are compared with.
        if entry.actor.role != SERVICE_ROLE {
            *self
                .volume
                .entry((entry.actor.org.clone(), entry.actor.user.clone()))
                .or_default() += 1;
        }
        if let Err((rule, reason)) = check(entry, facts) {
            *self.counts.entry(rule).or_default() += 1;
            if self.findings.len() < MAX_FINDINGS {
                self.findings.push(Finding {
                    seq,
                    at: entry.at,
                    org: entry.actor.org.clone(),
                    user: entry.actor.user.clone(),
                    action: entry.action.as_str(),
                    rule,
                    reason,
                });
            }
        }
    }

    pub fn finish(mut self) -> ScreeningReport {
        let mut volumes: Vec<u64> = self.volume.values().copied().collect();
        let median = median(&mut volumes);
        let threshold = (self.volume_rule.factor * median).max(self.volume_rule.floor as f64);
        let mut unusual: Vec<UnusualVolume> = self
            .volume
            .into_iter()
            .filter(|(_, n)| *n as f64 > threshold)
            .map(|((org, user), accesses)| UnusualVolume {
                org,
                user,
                accesses,
                threshold,
            })
            .collect();
        unusual.sort_by(|a, b| b.accesses.cmp(&a.accesses).then(a.user.cmp(&b.user)));
        self.findings.sort_by_key(|f| f.seq);
        let total: u64 = self.counts.values().sum();
        ScreeningReport {
            rules_version: SCREENING_RULES_VERSION,
            from: self.from,
            to: self.to,
            entries_screened: self.entries,
            actors: volumes.len() as u64,
            median_accesses_per_actor: median,
            volume_rule: self.volume_rule,
            counts: self.counts,
            findings_truncated: total > self.findings.len() as u64,
            findings: self.findings,
            unusual_volume: unusual,
        }
    }
}

fn median(values: &mut [u64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid] as f64
    } else {
        (values[mid - 1] + values[mid]) as f64 / 2.0
    }
}

type Flag = (Rule, &'static str);

const fn no_basis(reason: &'static str) -> Flag {
    (Rule::NoValidLegalBasis, reason)
}

/// Checks one entry against the facts.
pub fn check(entry: &LogEntry, facts: &Facts) -> Result<(), Flag> {
    let hospital = facts.patient_hospital.get(&entry.patient);
    match (&entry.legal_basis, entry.action) {
        (LegalBasis::TreatingHospital { hospital: cited }, action)
            if action.is_treating_hospitals_own() =>
        {
            if hospital != Some(cited) {
                return Err(no_basis("not_the_patients_hospital"));
            }
            if entry.actor.org != *cited || entry.actor.role != "hospital_staff" {
                return Err(no_basis("actor_not_staff_of_the_treating_hospital"));
            }
            Ok(())
        }
        (LegalBasis::Oversight, action) if action.is_read() => {
            if entry.actor.role != "auditor" {
                return Err(no_basis("oversight_by_a_non_auditor"));
            }
            Ok(())
        }
        (
            LegalBasis::Consent { version, .. },
            LogAction::ConsentRegister | LogAction::ConsentChange | LogAction::ConsentWithdraw,
        ) => {
            if !facts
                .consents
                .contains(&(entry.patient.clone(), version.clone()))
            {
                return Err(no_basis("no_consent_recorded_on_the_cited_version"));
            }
            if hospital != Some(&entry.actor.org) {
                return Err(no_basis("actor_not_staff_of_the_treating_hospital"));
            }
            Ok(())
        }
        // The service's own record that a proxy's permits lapsed at
        // majority: it cites the consent whose items lapsed.
        (LegalBasis::Consent { version, .. }, LogAction::ConsentLapse) => {
            if entry.actor.role != SERVICE_ROLE {
                return Err(no_basis("lapse_not_recorded_by_the_service"));
            }
            if !facts
                .consents
                .contains(&(entry.patient.clone(), version.clone()))
            {
                return Err(no_basis("no_consent_recorded_on_the_cited_version"));
            }
            Ok(())
        }
        (
            LegalBasis::RecontactApproval { request },
            action @ (LogAction::RecontactOpen
            | LogAction::RecontactApprove
            | LogAction::RecontactReject
            | LogAction::RecontactUnseal),
        ) => {
            let Some(known) = facts.recontact.get(request) else {
                return Err(no_basis("unknown_recontact_request"));
            };
            if known.patient != entry.patient {
                return Err(no_basis("recontact_request_for_another_patient"));
            }
            if action == LogAction::RecontactUnseal
                && !matches!(known.state.as_str(), "approved" | "unsealed")
            {
                return Err(no_basis("unsealed_without_approval"));
            }
            Ok(())
        }
        // Staff opening or answering an enquiry: those it was sent to.
        (
            LegalBasis::PatientEnquiry { enquiry },
            LogAction::EnquiryRead | LogAction::EnquiryAnswer,
        ) => {
            let Some(known) = facts.enquiries.get(enquiry) else {
                return Err(no_basis("unknown_enquiry"));
            };
            if known.patient != entry.patient {
                return Err(no_basis("enquiry_of_another_patient"));
            }
            let handles = match known.kind.handler() {
                Handler::Hospital => {
                    entry.actor.role == "hospital_staff" && entry.actor.org == known.hospital
                }
                Handler::Governance => entry.actor.role == "governance",
            };
            if !handles {
                return Err(no_basis("enquiry_not_sent_to_the_actor"));
            }
            Ok(())
        }
        (LegalBasis::Agreement { id }, LogAction::DatasetRelease | LogAction::HandleResolve) => {
            let Some(terms) = facts.agreements.get(id) else {
                return Err(no_basis("unknown_agreement"));
            };
            // The applicant releases; the store named in the handle resolves.
            let acting_for = if entry.action == LogAction::HandleResolve {
                terms.audiences.contains(&entry.actor.org)
            } else {
                terms.orgs.contains(&entry.actor.org)
            };
            if !acting_for {
                return Err(no_basis("agreement_of_another_organization"));
            }
            let Purpose::Research { duo } = &entry.purpose else {
                return Err((Rule::OutsideAgreementPurpose, "not_a_research_purpose"));
            };
            if !terms.purposes.contains(duo) {
                return Err((Rule::OutsideAgreementPurpose, "purpose_not_in_agreement"));
            }
            if entry.at < terms.starts_at || entry.at >= terms.ends_at {
                return Err((Rule::OutsideAgreementPeriod, "outside_agreement_period"));
            }
            if terms
                .halted
                .iter()
                .any(|(from, until)| entry.at >= *from && until.is_none_or(|t| entry.at < t))
            {
                return Err((
                    Rule::OutsideAgreementPeriod,
                    "agreement_suspended_or_revoked",
                ));
            }
            Ok(())
        }
        _ => Err(no_basis("basis_not_allowed_for_action")),
    }
}

#[cfg(test)]
mod tests;
