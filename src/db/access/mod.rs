//! Storage of data access: organizations, attestations, datasets,
//! applications and votes, agreements, releases, recall notices and the
//! Passport visas issued.

use super::schema::{
    agreement_acceptances as acceptances, agreement_texts as texts,
    agreement_transitions as sanctions, agreements, application_partner_orgs as partner_orgs,
    application_transitions as transitions, applications, dataset_samples, datasets,
    genome_samples, organizations, recall_notices, release_samples, releases,
    researcher_attestations as attestations, review_votes as votes, visa_issuances,
};
use super::DbConnection;
use crate::access::manifest::{spacing, POSITION_SPAN};
use crate::consent::DocumentFamily;
use crate::db_run;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use std::collections::{HashMap, HashSet};

#[derive(Queryable, Selectable, Insertable, AsChangeset, Debug, Clone)]
#[diesel(table_name = organizations)]
pub struct OrganizationRow {
    pub org: String,
    pub kind: String,
    pub country: String,
    pub verified_by: String,
    pub verified_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable, AsChangeset, Debug, Clone)]
#[diesel(table_name = attestations)]
pub struct AttestationRow {
    pub org: String,
    pub subject: String,
    pub training: String,
    pub completed_on: NaiveDate,
    pub expires_on: NaiveDate,
    pub recorded_by: String,
    pub recorded_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = datasets)]
pub struct DatasetRow {
    pub id: String,
    pub name: String,
    pub domain: String,
    pub terms: String,
    pub portfolio: String,
    pub created_by: String,
    pub created_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = dataset_samples)]
pub struct DatasetSampleRow {
    pub dataset_id: String,
    pub genome_id: String,
    pub diagnosis: Option<String>,
    pub added_at: NaiveDateTime,
    /// Copied from the sample: a page of the cohort needs no second lookup.
    pub patient_pseudonym: String,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = applications)]
pub struct ApplicationRow {
    pub id: String,
    pub org: String,
    pub submitted_by: String,
    pub declaration: String,
    pub commercial: bool,
    pub matching: String,
    pub state: String,
    pub conditions: String,
    pub submitted_at: NaiveDateTime,
    pub decided_at: Option<NaiveDateTime>,
    pub access_started_at: Option<NaiveDateTime>,
    /// The keyed hash of the submission's `Idempotency-Key`, if it had one.
    pub idempotency_key: Option<String>,
    /// The fingerprint of that submission, to tell a retry from a reuse.
    pub request_hash: Option<String>,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = transitions)]
pub struct TransitionRow {
    pub application_id: String,
    pub seq: i32,
    pub state: String,
    pub actor: String,
    pub at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = votes)]
pub struct VoteRow {
    pub application_id: String,
    pub voter: String,
    pub vote: String,
    pub voted_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = texts)]
pub struct AgreementTextRow {
    pub version: i32,
    pub body: String,
    pub sha256: String,
    pub published_by: String,
    pub published_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = agreements)]
pub struct AgreementRow {
    pub id: String,
    pub application_id: String,
    pub state: String,
    pub expires_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub state_reason: Option<String>,
    pub state_changed_at: Option<NaiveDateTime>,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = acceptances)]
pub struct AcceptanceRow {
    pub agreement_id: String,
    /// The member's organization and subject.
    pub member_org: String,
    pub member: String,
    pub text_version: i32,
    pub text_sha256: String,
    pub accepted_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = releases)]
pub struct ReleaseRow {
    pub id: String,
    pub application_id: String,
    pub agreement_id: String,
    pub released_by: String,
    pub audience: String,
    pub released_at: NaiveDateTime,
    pub handle_expires_at: NaiveDateTime,
    pub included: i64,
    pub excluded: i64,
    pub provenance: String,
    /// Excluded samples by reason, as a JSON object; NULL only inside the
    /// release's own transaction, until it is finished.
    pub excluded_by_reason: Option<String>,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = release_samples)]
// Written by `COPY`, which needs every value bound (`None` is NULL).
#[diesel(treat_none_as_default_value = false)]
pub struct ReleaseSampleRow {
    pub release_id: String,
    pub position: i64,
    pub dataset_id: String,
    pub genome_id: String,
    pub patient_pseudonym: String,
    pub project_sample_id: String,
    pub included: bool,
    pub reason: String,
    pub consent_version: Option<i32>,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = recall_notices)]
// Binary `COPY` needs every value spelled out (see `record_recalls`).
#[diesel(treat_none_as_default_value = false)]
pub struct RecallRow {
    pub id: String,
    pub application_id: String,
    pub release_id: String,
    pub project_sample_id: String,
    pub reason: String,
    pub created_at: NaiveDateTime,
}

/// A GA4GH Passport visa the service signed, by its `jti`.
#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = visa_issuances)]
pub struct VisaIssuanceRow {
    pub jti: String,
    pub application_id: String,
    /// The Passport visa type.
    pub visa_type: String,
    pub member_org: String,
    pub member: String,
    pub issued_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

/// Rows per multi-row INSERT on PostgreSQL: under its 65,535 bind
/// parameters for the widest row here (9 columns).
const INSERT_CHUNK: usize = 2_000;

/// Inserts many rows: multi-row statements on PostgreSQL; on SQLite one
/// cached prepared statement per row, which inside a transaction costs
/// microseconds (diesel's SQLite batch insert cannot bind NULLs).
macro_rules! insert_many {
    ($conn:expr, $table:expr, $rows:expr $(, $conflict:ident)?) => {{
        let mut written = 0usize;
        match $conn {
            DbConnection::Postgresql(c) => {
                for chunk in $rows.chunks(INSERT_CHUNK) {
                    written += diesel::insert_into($table).values(chunk)$(.$conflict())?.execute(c)?;
                }
            }
            DbConnection::Sqlite(c) => {
                for row in $rows {
                    written += diesel::insert_into($table).values(row)$(.$conflict())?.execute(c)?;
                }
            }
        }
        written
    }};
}

mod register;
pub use register::*;
mod review;
pub use review::*;
mod contracts;
pub use contracts::*;
mod manifests;
pub use manifests::*;
mod recalls;
pub use recalls::*;
