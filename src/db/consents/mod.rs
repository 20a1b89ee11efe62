//! Storage of patients and their consent events. Events are only ever
//! inserted; the database refuses updates and deletes.

use super::documents::utc;
use super::schema::{consent_events as events, patients};
use super::DbConnection;
use crate::consent::{ConsentEvent, Decision, DocumentFamily, EventKind, Person, ScopeItemKey};
use crate::db_run;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use std::collections::BTreeMap;

mod people;
pub use people::*;
mod history;
pub use history::*;
mod records;
pub use records::*;
mod writes;
pub use writes::*;

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = patients)]
pub struct PatientRow {
    pub pseudonym: String,
    pub hospital_org: String,
    pub majority_on: Option<NaiveDate>,
    pub deceased_on: Option<NaiveDate>,
    pub created_at: NaiveDateTime,
}

impl PatientRow {
    pub fn person(&self) -> Person {
        Person {
            majority_on: self.majority_on,
            deceased_on: self.deceased_on,
        }
    }
}

/// The signer kind stored for a proxy's signature.
const PROXY: &str = "proxy";

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = events)]
pub struct EventRow {
    pub id: String,
    pub patient_pseudonym: String,
    pub family: String,
    pub document_version_id: String,
    pub kind: String,
    pub signer_kind: String,
    pub proxy_relationship: Option<String>,
    pub explained_by: String,
    pub signed_at: NaiveDateTime,
    pub recorded_at: NaiveDateTime,
    pub form_hash: String,
    pub hospital_org: String,
    pub recorded_by: String,
    pub idempotency_key: String,
    pub request_hash: String,
}

/// An event as stored: the domain event plus who recorded it and how.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub event: ConsentEvent,
    pub row: EventRow,
}

fn corrupt(what: &str) -> DieselError {
    DieselError::DeserializationError(format!("corrupt {what} in consent storage").into())
}
