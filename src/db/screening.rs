//! Screening the access log: feeds a period's entries, page by page, with
//! the facts they cite to the pure `ledger::screening` rules, and stores
//! the periodic reports.

use super::ledger::entries_recorded_between;
use super::schema::{
    agreements, applications, consent_events, patient_enquiries, patients,
    recontact_requests as requests, releases, screening_reports as reports,
};
use super::DbConnection;
use crate::access::review::AgreementState;
use crate::consent::enquiry::EnquiryKind;
use crate::db_run;
use crate::ledger::entry::{LegalBasis, LogEntry};
use crate::ledger::screening::{
    AgreementTerms, EnquiryFacts, Facts, RecontactFacts, Screener, ScreeningReport, VolumeRule,
};
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use std::collections::BTreeSet;

/// Entries screened per page: bounds memory for any period length.
const PAGE: i64 = 10_000;
/// Keys per `IN (…)` list.
const CHUNK: usize = 1_000;

/// Screens every entry recorded in `[from, to)`.
pub fn screen(
    conn: &mut DbConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    rule: VolumeRule,
) -> Result<ScreeningReport, DieselError> {
    let mut screener = Screener::new(from, to, rule);
    let mut after = 0i64;
    loop {
        let rows = entries_recorded_between(conn, from.naive_utc(), to.naive_utc(), after, PAGE)?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.seq;
        let page: Vec<(i64, LogEntry)> = rows
            .iter()
            .filter_map(|row| match LogEntry::from_bytes(&row.entry) {
                Ok(entry) => Some((row.seq, entry)),
                Err(_) => {
                    // verify-log reports unreadable entries; screening
                    // cannot judge them.
                    tracing::error!(seq = row.seq, "an entry does not parse; not screened");
                    None
                }
            })
            .collect();
        let facts = facts_for(conn, page.iter().map(|(_, e)| e))?;
        for (seq, entry) in &page {
            screener.observe(*seq, entry, &facts);
        }
    }
    Ok(screener.finish())
}

/// What the service knows about the patients, consent versions and
/// recontact requests the entries cite. Agreements are not stored yet, so
/// an entry citing one is reported as citing an unknown agreement.
fn facts_for<'a>(
    conn: &mut DbConnection,
    entries: impl Iterator<Item = &'a LogEntry>,
) -> Result<Facts, DieselError> {
    let mut patients_cited = BTreeSet::new();
    let mut requests_cited = BTreeSet::new();
    let mut enquiries_cited = BTreeSet::new();
    let mut agreements_cited = BTreeSet::new();
    for entry in entries {
        patients_cited.insert(entry.patient.clone());
        match &entry.legal_basis {
            LegalBasis::RecontactApproval { request } => {
                requests_cited.insert(request.clone());
            }
            LegalBasis::Agreement { id } => {
                agreements_cited.insert(id.clone());
            }
            LegalBasis::PatientEnquiry { enquiry } => {
                enquiries_cited.insert(enquiry.clone());
            }
            _ => {}
        }
    }
    let agreements_cited: Vec<String> = agreements_cited.into_iter().collect();
    let patients_cited: Vec<String> = patients_cited.into_iter().collect();
    let requests_cited: Vec<String> = requests_cited.into_iter().collect();
    let mut facts = Facts::default();
    for chunk in patients_cited.chunks(CHUNK) {
        let hospitals: Vec<(String, String)> = db_run!(conn, c => patients::table
            .filter(patients::pseudonym.eq_any(chunk))
            .select((patients::pseudonym, patients::hospital_org))
            .load(c))?;
        facts.patient_hospital.extend(hospitals);
        let consents: Vec<(String, String)> = db_run!(conn, c => consent_events::table
            .filter(consent_events::patient_pseudonym.eq_any(chunk))
            .select((consent_events::patient_pseudonym, consent_events::document_version_id))
            .distinct()
            .load(c))?;
        facts.consents.extend(consents);
    }
    for chunk in requests_cited.chunks(CHUNK) {
        let found: Vec<(String, String, String)> = db_run!(conn, c => requests::table
            .filter(requests::id.eq_any(chunk))
            .select((requests::id, requests::patient_pseudonym, requests::state))
            .load(c))?;
        facts.recontact.extend(
            found
                .into_iter()
                .map(|(id, patient, state)| (id, RecontactFacts { patient, state })),
        );
    }
    let enquiries_cited: Vec<String> = enquiries_cited.into_iter().collect();
    for chunk in enquiries_cited.chunks(CHUNK) {
        let found: Vec<(String, String, String, String)> = db_run!(conn, c => patient_enquiries::table
            .filter(patient_enquiries::id.eq_any(chunk))
            .select((
                patient_enquiries::id,
                patient_enquiries::patient_pseudonym,
                patient_enquiries::hospital_org,
                patient_enquiries::kind,
            ))
            .load(c))?;
        facts.enquiries.extend(
            found
                .into_iter()
                .filter_map(|(id, patient, hospital, kind)| {
                    let kind = EnquiryKind::parse(&kind)?;
                    Some((
                        id,
                        EnquiryFacts {
                            patient,
                            hospital,
                            kind,
                        },
                    ))
                }),
        );
    }
    for chunk in agreements_cited.chunks(CHUNK) {
        facts.agreements.extend(agreement_terms(conn, chunk)?);
    }
    Ok(facts)
}

/// What screening needs of the cited agreements: the applicant, the
/// purpose, the period, any sanction and the stores handles went to.
fn agreement_terms(
    conn: &mut DbConnection,
    ids: &[String],
) -> Result<Vec<(String, AgreementTerms)>, DieselError> {
    type Row = (String, NaiveDateTime, NaiveDateTime, String, String);
    let rows: Vec<Row> = db_run!(conn, c => agreements::table
        .inner_join(applications::table.on(applications::id.eq(agreements::application_id)))
        .filter(agreements::id.eq_any(ids))
        .select((
            agreements::id,
            agreements::created_at,
            agreements::expires_at,
            applications::org,
            applications::declaration,
        ))
        .load(c))?;
    let audiences: Vec<(String, String)> = db_run!(conn, c => releases::table
        .filter(releases::agreement_id.eq_any(ids))
        .select((releases::agreement_id, releases::audience))
        .distinct()
        .load(c))?;
    let history = super::access::agreement_transitions_of(conn, ids)?;
    rows.into_iter()
        .map(|(id, created, expires, org, declaration)| {
            #[derive(serde::Deserialize)]
            struct Declared {
                purpose: crate::access::duo::ResearchPurpose,
                starts_on: chrono::NaiveDate,
                #[serde(default)]
                partner_members: Vec<Partner>,
            }
            #[derive(serde::Deserialize)]
            struct Partner {
                org: String,
            }
            let declared: Declared = serde_json::from_str(&declaration).map_err(|_| {
                DieselError::DeserializationError("corrupt application declaration".into())
            })?;
            let mut orgs = vec![org];
            for partner in declared.partner_members {
                if !orgs.contains(&partner.org) {
                    orgs.push(partner.org);
                }
            }
            let terms = AgreementTerms {
                orgs,
                purposes: vec![declared.purpose.duo_id().to_owned()],
                // Nothing may happen under an agreement before it exists,
                // nor before its declared period begins.
                starts_at: created
                    .and_utc()
                    .max(crate::access::period_start(declared.starts_on)),
                ends_at: expires.and_utc(),
                halted: halted_periods(history.iter().filter(|t| t.agreement_id == id)),
                audiences: audiences
                    .iter()
                    .filter(|(a, _)| a == &id)
                    .map(|(_, store)| store.clone())
                    .collect(),
            };
            Ok((id, terms))
        })
        .collect()
}

/// The periods an agreement was suspended or revoked, from its state
/// history (oldest first).
fn halted_periods<'a>(
    history: impl Iterator<Item = &'a super::access::AgreementTransitionRow>,
) -> Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> {
    let mut periods: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> = Vec::new();
    for t in history {
        let open = periods.last().is_some_and(|(_, until)| until.is_none());
        match (AgreementState::parse(&t.state), open) {
            (Some(AgreementState::Active), true) => {
                if let Some(last) = periods.last_mut() {
                    last.1 = Some(t.at.and_utc());
                }
            }
            (Some(AgreementState::Suspended | AgreementState::Revoked), false) => {
                periods.push((t.at.and_utc(), None))
            }
            _ => {}
        }
    }
    periods
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = reports)]
pub struct ReportRow {
    pub period_start: NaiveDateTime,
    pub period_end: NaiveDateTime,
    pub generated_at: NaiveDateTime,
    pub rules_version: String,
    pub entries_screened: i64,
    pub flagged: i64,
    pub unusual_actors: i64,
    pub report: String,
}

impl ReportRow {
    pub fn of(report: &ScreeningReport, generated_at: DateTime<Utc>) -> Self {
        ReportRow {
            period_start: report.from.naive_utc(),
            period_end: report.to.naive_utc(),
            generated_at: generated_at.naive_utc(),
            rules_version: report.rules_version.to_owned(),
            entries_screened: report.entries_screened as i64,
            flagged: report.counts.values().sum::<u64>() as i64,
            unusual_actors: report.unusual_volume.len() as i64,
            // Serializing plain structs cannot fail.
            report: serde_json::to_string(report).unwrap_or_default(),
        }
    }
}

pub fn report_exists(conn: &mut DbConnection, start: NaiveDateTime) -> Result<bool, DieselError> {
    let found: Option<NaiveDateTime> = db_run!(conn, c => reports::table
        .find(start)
        .select(reports::period_start)
        .first(c)
        .optional())?;
    Ok(found.is_some())
}

/// The start of the newest period with a stored report.
/// The end of the newest stored report's period: screening goes on from
/// there.
pub fn screened_until(conn: &mut DbConnection) -> Result<Option<DateTime<Utc>>, DieselError> {
    let newest: Option<NaiveDateTime> = db_run!(conn, c => reports::table
        .order(reports::period_start.desc())
        .select(reports::period_end)
        .first(c)
        .optional())?;
    Ok(newest.map(|t| t.and_utc()))
}

/// When the log's first entry was recorded, if it has any.
pub fn first_entry_at(conn: &mut DbConnection) -> Result<Option<DateTime<Utc>>, DieselError> {
    use super::schema::access_log_entries as entries;
    let first: Option<NaiveDateTime> = db_run!(conn, c => entries::table
        .order(entries::seq)
        .select(entries::recorded_at)
        .first(c)
        .optional())?;
    Ok(first.map(|t| t.and_utc()))
}

/// Stores a period's report unless another instance already did.
pub fn store_report(conn: &mut DbConnection, row: &ReportRow) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(reports::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(())
}

/// Stored reports, newest period first, starting before `before`.
pub fn reports_before(
    conn: &mut DbConnection,
    before: Option<NaiveDateTime>,
    limit: i64,
) -> Result<Vec<ReportRow>, DieselError> {
    db_run!(conn, c => {
        let mut query = reports::table.into_boxed();
        if let Some(before) = before {
            query = query.filter(reports::period_start.lt(before));
        }
        query
            .order(reports::period_start.desc())
            .limit(limit)
            .select(ReportRow::as_select())
            .load(c)
    })
}
