//! A patient's enquiries (decision 0037): a question to their hospital, or
//! a report to the governance body that an access looks wrong or that they
//! met genetic discrimination.
//!
//! The patient sends and follows them in the portal. The staff they go to
//! list, open and answer them through the API. Every message is sealed with
//! the vault key: a patient may write anything, a name or a diagnosis. An
//! opening and an answer are accesses to what the patient wrote, so each is
//! an entry in the patient's log, committed with it, and told to them like
//! any other.

use super::entries;
use super::gates::{patient_self, principal};
use super::idempotency::{write_once, Answered, Replayable, Retry};
use super::{AppError, Context};
use crate::auth::policy::{Action, Resource};
use crate::auth::{Caller, Principal, Role};
use crate::consent::enquiry::{Author, EnquiryKind, EnquiryState, Handler};
use crate::consent::DocumentFamily;
use crate::db::enquiries::{self as store, EnquiryRow, MessageRow};
use crate::db::{consents as patients, ledger, DbConnection};
use crate::ledger::entry::{DataScope, LegalBasis, LogAction, LogEntry, Purpose};
use crate::pseudonym::vault::Sealed;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a patient sends.
pub struct NewEnquiry {
    pub kind: EnquiryKind,
    /// Checked plain text, at most `consent::enquiry::MESSAGE_MAX_CHARS`.
    pub text: String,
    /// The log index of the entry a report is about.
    pub about_entry: Option<u64>,
    /// The consent family a question is about.
    pub about_family: Option<DocumentFamily>,
}

/// One message, opened.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    /// `patient` or `staff`.
    pub author: String,
    /// The organization of the staff who wrote it; the patient's portal for
    /// the patient.
    pub author_org: String,
    pub at: DateTime<Utc>,
    pub text: String,
}

/// An enquiry in a staff work list: what it is and where it stands, never
/// what the patient wrote (opening it is logged).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnquirySummary {
    pub id: String,
    /// `question`, `wrong_access` or `discrimination`.
    #[schema(value_type = String)]
    pub kind: EnquiryKind,
    /// `sent`, `read` or `answered`.
    #[schema(value_type = String)]
    pub state: EnquiryState,
    /// The log index of the entry a report is about.
    pub about_entry: Option<u64>,
    /// The consent family a question is about.
    pub about_family: Option<String>,
    pub sent_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An enquiry with its messages: what the patient follows, and what the
/// staff it went to see when they open it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnquiryView {
    #[serde(flatten)]
    pub summary: EnquirySummary,
    pub messages: Vec<MessageView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnquiryList {
    pub enquiries: Vec<EnquirySummary>,
}

/// An enquiry as the staff who opened it see it: with the patient's
/// reference, to look up their consent as the hospital may.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenedEnquiry {
    pub patient_ref: String,
    #[serde(flatten)]
    pub enquiry: EnquiryView,
}

/// What a message is bound to when sealed: its enquiry and place, so a
/// sealed message moved to another enquiry or place no longer opens.
fn message_aad(enquiry: &str, seq: i32) -> Vec<u8> {
    format!("enquiry:{enquiry}:{seq}").into_bytes()
}

fn kind_of(row: &EnquiryRow) -> Result<EnquiryKind, AppError> {
    EnquiryKind::parse(&row.kind).ok_or_else(|| AppError::internal("stored enquiry kind"))
}

fn state_of(row: &EnquiryRow) -> Result<EnquiryState, AppError> {
    EnquiryState::parse(&row.state).ok_or_else(|| AppError::internal("stored enquiry state"))
}

fn summary(row: &EnquiryRow) -> Result<EnquirySummary, AppError> {
    Ok(EnquirySummary {
        id: row.id.clone(),
        kind: kind_of(row)?,
        state: state_of(row)?,
        about_entry: row.about_entry.and_then(|i| u64::try_from(i).ok()),
        about_family: row.about_family.clone(),
        sent_at: crate::db::documents::utc(row.sent_at),
        updated_at: crate::db::documents::utc(row.updated_at),
    })
}

/// Seals and stores the next message of an enquiry.
fn add_message(
    ctx: &Context,
    conn: &mut DbConnection,
    enquiry: &str,
    author: (Author, &str, &str),
    text: &str,
    at: DateTime<Utc>,
) -> Result<(), AppError> {
    let seq = store::next_seq(conn, enquiry)?;
    let sealed = ctx
        .keys
        .seal_bytes(&message_aad(enquiry, seq), text.as_bytes())
        .map_err(|_| AppError::internal("sealing an enquiry message"))?;
    let (author, org, user) = author;
    store::insert_message(
        conn,
        &MessageRow {
            enquiry_id: enquiry.to_owned(),
            seq,
            author: author.as_str().to_owned(),
            author_org: org.to_owned(),
            author_user: user.to_owned(),
            key_version: i32::try_from(sealed.key_version).map_err(AppError::internal)?,
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
            at: at.naive_utc(),
        },
    )?;
    Ok(())
}

/// The enquiry with every message opened. A message that does not open
/// is a vault integrity failure: nothing is shown rather than part.
fn view(ctx: &Context, conn: &mut DbConnection, row: &EnquiryRow) -> Result<EnquiryView, AppError> {
    let mut messages = Vec::new();
    for m in store::messages_of(conn, &row.id)? {
        let sealed = Sealed {
            key_version: u32::try_from(m.key_version).map_err(|_| AppError::VaultIntegrity)?,
            nonce: m.nonce,
            ciphertext: m.ciphertext,
        };
        let plain = ctx
            .keys
            .open_bytes(&message_aad(&row.id, m.seq), &sealed)
            .map_err(|_| AppError::VaultIntegrity)?;
        let text = String::from_utf8(plain).map_err(|_| AppError::VaultIntegrity)?;
        messages.push(MessageView {
            author: m.author,
            author_org: m.author_org,
            at: crate::db::documents::utc(m.at),
            text,
        });
    }
    Ok(EnquiryView {
        summary: summary(row)?,
        messages,
    })
}

/// The organization a patient's own messages are shown under.
pub const PATIENT_AUTHOR_ORG: &str = "patient-portal";

/// The calling patient sends an enquiry. A report about an entry must name
/// one of the patient's own entries. A retry under the same key (a form
/// sent twice, an app's lost answer) answers the first enquiry again.
pub fn send(
    ctx: &Context,
    caller: &Caller,
    new: NewEnquiry,
    retry: Option<Retry>,
) -> Result<Answered<EnquiryView>, AppError> {
    let p = principal(caller)?;
    let replayable = Replayable::of(ctx, p, "enquiry_send", retry)?;
    let now = ctx.now();
    write_once(ctx, replayable.as_ref(), |conn| {
        let (pseudonym, _) = patient_self(ctx, conn, caller)?;
        let patient = patients::find_patient(conn, &pseudonym)?.ok_or(AppError::Forbidden)?;
        ctx.authorize_patient(
            caller,
            Action::EnquirySendOwn,
            &pseudonym,
            &patient.hospital_org,
            &[],
        )?;
        if let Some(index) = new.about_entry {
            let own = ledger::patient_indices_from(conn, &pseudonym, index, index + 1, 1)?;
            if own.is_empty() {
                return Err(AppError::field(
                    "about_entry",
                    "is not an entry of your access history",
                ));
            }
        }
        let row = EnquiryRow {
            id: uuid::Uuid::new_v4().to_string(),
            patient_pseudonym: pseudonym.clone(),
            hospital_org: patient.hospital_org,
            kind: new.kind.as_str().to_owned(),
            state: EnquiryState::Sent.as_str().to_owned(),
            about_entry: new
                .about_entry
                .map(|i| i64::try_from(i).map_err(AppError::internal))
                .transpose()?,
            about_family: new.about_family.map(|f| f.as_str().to_owned()),
            sent_at: now.naive_utc(),
            updated_at: now.naive_utc(),
        };
        store::insert(conn, &row)?;
        let patient_author = (Author::Patient, PATIENT_AUTHOR_ORG, "patient");
        add_message(ctx, conn, &row.id, patient_author, &new.text, now)?;
        tracing::info!(enquiry_id = %row.id, kind = %row.kind, "patient enquiry sent");
        view(ctx, conn, &row)
    })
}

/// The calling patient's enquiries, newest first, with every message.
pub fn mine(ctx: &Context, caller: &Caller) -> Result<Vec<EnquiryView>, AppError> {
    ctx.read(|conn| {
        let (pseudonym, _) = patient_self(ctx, conn, caller)?;
        store::of_patient(conn, &pseudonym)?
            .iter()
            .map(|row| view(ctx, conn, row))
            .collect()
    })
}

/// One of the calling patient's enquiries; another patient's is as unknown
/// as one that does not exist.
pub fn my_enquiry(ctx: &Context, caller: &Caller, id: &str) -> Result<EnquiryView, AppError> {
    ctx.read(|conn| {
        let (pseudonym, _) = patient_self(ctx, conn, caller)?;
        let row = store::find(conn, id)?
            .filter(|row| row.patient_pseudonym == pseudonym)
            .ok_or(AppError::NotFound)?;
        view(ctx, conn, &row)
    })
}

/// The action that opens and answers an enquiry of `kind`.
fn handling(kind: EnquiryKind) -> Action {
    match kind.handler() {
        Handler::Hospital => Action::EnquiryHandleQuestion,
        Handler::Governance => Action::EnquiryHandleReport,
    }
}

/// Whether the caller is one of those an enquiry goes to.
fn handles(ctx: &Context, caller: &Caller, row: &EnquiryRow) -> Result<bool, AppError> {
    Ok(ctx.policy.is_allowed(
        caller,
        handling(kind_of(row)?),
        &Resource::Patient {
            pseudonym: &row.patient_pseudonym,
            hospital: &row.hospital_org,
            centers: &[],
        },
    ))
}

/// Loads an enquiry the caller handles. To anyone else it does not exist:
/// not even the patient's own hospital learns that a report was made.
fn handled_enquiry(
    ctx: &Context,
    conn: &mut DbConnection,
    caller: &Caller,
    id: &str,
) -> Result<EnquiryRow, AppError> {
    let row = store::find(conn, id)?.ok_or(AppError::NotFound)?;
    if handles(ctx, caller, &row)? {
        Ok(row)
    } else {
        Err(AppError::NotFound)
    }
}

/// The role the staff act in: the patient's hospital for a question, the
/// governance body for a report.
fn handling_role(kind: EnquiryKind) -> Role {
    match kind.handler() {
        Handler::Hospital => Role::HospitalStaff,
        Handler::Governance => Role::Governance,
    }
}

fn enquiry_entry(
    p: &Principal,
    row: &EnquiryRow,
    kind: EnquiryKind,
    action: LogAction,
    at: DateTime<Utc>,
) -> LogEntry {
    entries::entry(
        p,
        handling_role(kind),
        &row.patient_pseudonym,
        entries::Access {
            action,
            purpose: Purpose::Enquiry,
            basis: LegalBasis::PatientEnquiry {
                enquiry: row.id.clone(),
            },
            scope: DataScope::Enquiry {
                kind: kind.as_str().to_owned(),
            },
        },
        at,
    )
}

/// Enquiries in one state that the caller answers (a work list): hospital
/// staff see their patients' questions, the governance body the reports.
pub fn work_list(
    ctx: &Context,
    caller: &Caller,
    state: EnquiryState,
) -> Result<EnquiryList, AppError> {
    principal(caller)?;
    let kinds: Vec<&str> = EnquiryKind::ALL.iter().map(|k| k.as_str()).collect();
    let enquiries = ctx.read(|conn| {
        let mut out = Vec::new();
        for row in store::in_state(conn, &kinds, state.as_str())? {
            if handles(ctx, caller, &row)? {
                out.push(summary(&row)?);
            }
        }
        Ok(out)
    })?;
    Ok(EnquiryList { enquiries })
}

/// Opens an enquiry to read it: the opening is logged and told to the
/// patient, and a sent enquiry reads `read` from then on.
pub fn open(ctx: &Context, caller: &Caller, id: &str) -> Result<OpenedEnquiry, AppError> {
    let p = principal(caller)?;
    let now = ctx.now();
    let opened = ctx.write(|conn| {
        let mut row = handled_enquiry(ctx, conn, caller, id)?;
        let kind = kind_of(&row)?;
        let state = state_of(&row)?;
        if state.opened() != state {
            row.state = state.opened().as_str().to_owned();
            row.updated_at = now.naive_utc();
            store::set_state(conn, id, &row.state, row.updated_at)?;
        }
        ledger::append(
            conn,
            &[enquiry_entry(p, &row, kind, LogAction::EnquiryRead, now)],
        )?;
        Ok(OpenedEnquiry {
            patient_ref: row.patient_pseudonym.clone(),
            enquiry: view(ctx, conn, &row)?,
        })
    })?;
    ctx.log.entries_committed();
    Ok(opened)
}

/// Answers an enquiry: the answer is sealed like the patient's words,
/// logged and told to the patient, and the enquiry reads `answered`.
pub fn answer(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    text: String,
    retry: Option<Retry>,
) -> Result<Answered<OpenedEnquiry>, AppError> {
    let p = principal(caller)?;
    let replayable = Replayable::of(ctx, p, "enquiry_answer", retry)?;
    let now = ctx.now();
    let answered = write_once(ctx, replayable.as_ref(), |conn| {
        let mut row = handled_enquiry(ctx, conn, caller, id)?;
        let kind = kind_of(&row)?;
        row.state = state_of(&row)?.answered().as_str().to_owned();
        row.updated_at = now.naive_utc();
        store::set_state(conn, id, &row.state, row.updated_at)?;
        add_message(
            ctx,
            conn,
            id,
            (Author::Staff, &p.org, &p.subject),
            &text,
            now,
        )?;
        ledger::append(
            conn,
            &[enquiry_entry(p, &row, kind, LogAction::EnquiryAnswer, now)],
        )?;
        tracing::info!(enquiry_id = %id, "enquiry answered");
        Ok(OpenedEnquiry {
            patient_ref: row.patient_pseudonym.clone(),
            enquiry: view(ctx, conn, &row)?,
        })
    })?;
    ctx.log.entries_committed();
    Ok(answered)
}
