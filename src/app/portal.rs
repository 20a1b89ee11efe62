//! What a patient does about themselves: reads who accessed their data and
//! why, their current consent, the live stream of receipts, and their
//! preferences. (Enrollment and sign-in are in `enrollment`, webhooks in
//! `webhooks`.)
//!
//! A patient token is bound to one pseudonym, and every read here is keyed
//! by the token's pseudonym only: nothing a patient sends can name someone
//! else.

use super::consents::{consent_summaries, ConsentSummary};
use super::gates::patient_self;
use super::{AppError, Context};
use crate::auth::Caller;
use crate::db::{ledger, portal as store};
use crate::ledger::entry::{explain, Explanation, Language, LogEntry};
use crate::notify::{self, hub::Subscription};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// Entries per page of a patient's or an auditor's log, unless asked.
pub const LOG_PAGE: i64 = 20;
pub const MAX_LOG_PAGE: i64 = 100;

#[derive(Serialize, ToSchema)]
pub struct AccessView {
    /// Position in the log; absent for the few milliseconds before the entry
    /// is integrated.
    pub index: Option<u64>,
    #[schema(value_type = Object)]
    pub entry: LogEntry,
    /// The exact logged bytes, base64: with an inclusion proof from
    /// `/v1/log/proofs/inclusion`, a receipt anyone can check.
    pub entry_bytes: String,
    #[schema(value_type = Object)]
    pub explanation: Explanation,
}

#[derive(Serialize, ToSchema)]
pub struct AccessPage {
    pub entries: Vec<AccessView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct MyConsents {
    /// One entry per family with any consent event.
    pub consents: Vec<ConsentSummary>,
}

/// A patient's preferences.
#[derive(Debug, Clone, Copy)]
pub struct Preferences {
    /// The language of explanations.
    pub language: Language,
    /// Whether the hospital's patient app may also notify the patient.
    pub hospital_app: bool,
}

/// Which page of a log: entries older than `before` (a `next_before`),
/// `limit` of them, explained in `lang` (the patient's preference when
/// absent).
pub struct LogPage {
    pub before: Option<i64>,
    pub limit: i64,
    pub lang: Option<Language>,
}

/// Rows to a page of entries, `limit` asked for plus one to know if more.
pub(crate) fn page_of(
    rows: Vec<(ledger::EntryRow, Option<u64>)>,
    limit: i64,
    lang: Language,
) -> Result<AccessPage, AppError> {
    let more = rows.len() as i64 > limit;
    let mut entries = Vec::new();
    let mut last_seq = None;
    for (row, index) in rows.into_iter().take(limit as usize) {
        let entry = LogEntry::from_bytes(&row.entry).map_err(AppError::internal)?;
        last_seq = Some(row.seq);
        entries.push(AccessView {
            index,
            entry_bytes: base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                &row.entry,
            ),
            explanation: explain(&entry, lang),
            entry,
        });
    }
    Ok(AccessPage {
        entries,
        next_before: if more { last_seq } else { None },
    })
}

fn stored_language(prefs: &store::Preferences) -> Language {
    Language::parse(&prefs.language).unwrap_or(Language::Ja)
}

/// Who accessed the calling patient's data, newest first: which
/// organization, which person in which role, for what purpose, under which
/// consent or agreement, and when, explained in Japanese or English.
pub fn access_log(ctx: &Context, caller: &Caller, page: LogPage) -> Result<AccessPage, AppError> {
    let (rows, prefs) = ctx.read(|conn| {
        let (pseudonym, _) = patient_self(ctx, conn, caller)?;
        let rows = ledger::patient_entries(conn, &pseudonym, page.before, page.limit + 1)?;
        Ok((rows, store::preferences(conn, &pseudonym)?))
    })?;
    let lang = page.lang.unwrap_or_else(|| stored_language(&prefs));
    page_of(rows, page.limit, lang)
}

/// The calling patient's current consent in each family.
pub fn consents(ctx: &Context, caller: &Caller) -> Result<MyConsents, AppError> {
    let now = ctx.now();
    let consents = ctx.read(|conn| {
        let (pseudonym, person) = patient_self(ctx, conn, caller)?;
        consent_summaries(conn, &pseudonym, &person, now)
    })?;
    Ok(MyConsents { consents })
}

pub fn preferences(ctx: &Context, caller: &Caller) -> Result<Preferences, AppError> {
    let prefs = ctx.read(|conn| {
        let (pseudonym, _) = patient_self(ctx, conn, caller)?;
        Ok(store::preferences(conn, &pseudonym)?)
    })?;
    Ok(Preferences {
        language: stored_language(&prefs),
        hospital_app: prefs.hospital_app,
    })
}

pub fn set_preferences(
    ctx: &Context,
    caller: &Caller,
    prefs: Preferences,
) -> Result<Preferences, AppError> {
    let (pseudonym, _) = ctx.read(|conn| patient_self(ctx, conn, caller))?;
    let stored = store::Preferences {
        language: prefs.language.as_str().to_owned(),
        hospital_app: prefs.hospital_app,
    };
    let now = ctx.now();
    ctx.write(|conn| {
        Ok(store::set_preferences(
            conn,
            &pseudonym,
            &stored,
            now.naive_utc(),
        )?)
    })?;
    Ok(prefs)
}

/// A patient's live stream of receipts: what it missed, then what comes.
pub struct Stream {
    /// Server-Sent Events frames of the receipts replayed, oldest first.
    pub backlog: Vec<String>,
    /// Live frames, unless more remain to replay: then the stream ends
    /// after the backlog and the client's reconnection continues from its
    /// last id.
    pub live: Option<(Subscription, tokio::sync::mpsc::Receiver<Arc<str>>)>,
}

/// Opens the calling patient's stream, replaying receipts from log index
/// `first` on (inclusive) when given, at most `notify.stream_replay_page`.
pub fn open_stream(ctx: &Context, caller: &Caller, first: Option<u64>) -> Result<Stream, AppError> {
    let (pseudonym, _) = ctx.read(|conn| patient_self(ctx, conn, caller))?;
    // Subscribe before replaying, so nothing falls between the two; a frame
    // may then arrive twice, and its `id` tells the client.
    let live = ctx.log.hub.subscribe(&pseudonym);
    let Some(first) = first else {
        return Ok(Stream {
            backlog: Vec::new(),
            live: Some(live),
        });
    };
    let page = ctx.stream_replay_page;
    let (backlog, more) = ctx.read(|conn| {
        let Some(cp) = ledger::latest_checkpoint(conn)? else {
            return Ok((Vec::new(), false));
        };
        let size = cp.size as u64;
        let mut missed = ledger::patient_indices_from(conn, &pseudonym, first, size, page + 1)?;
        let more = missed.len() as i64 > page;
        missed.truncate(page as usize);
        let entries = ledger::entries_at(conn, &missed)?;
        let frames = notify::build(conn, &entries, size, &cp.note)?
            .into_iter()
            .map(|(_, n)| notify::sse_frame(&n))
            .collect();
        Ok((frames, more))
    })?;
    Ok(Stream {
        backlog,
        live: (!more).then_some(live),
    })
}

/// One family of the calling patient's consent, with the wording the
/// patient agreed to: what the portal's consent page shows.
pub struct FamilyConsent {
    pub family: crate::consent::DocumentFamily,
    pub status: crate::consent::ConsentStatus,
    /// The version in force, with its titles and item texts.
    pub version: Option<crate::consent::DocumentVersion>,
    /// Each item's decision and its reason, in the version's order.
    pub items: Vec<ItemConsent>,
}

pub struct ItemConsent {
    pub item: crate::consent::ScopeItem,
    pub state: crate::consent::ItemState,
    /// A proxy's permit that lapsed when the patient came of age.
    pub needs_own_consent: bool,
}

/// The calling patient's consent in every family they have one in, with
/// the document version's wording for each item.
pub fn consent_details(ctx: &Context, caller: &Caller) -> Result<Vec<FamilyConsent>, AppError> {
    use crate::consent::{DocumentFamily, DocumentVersionId};
    let now = ctx.now();
    ctx.read(|conn| {
        let (pseudonym, person) = patient_self(ctx, conn, caller)?;
        let mut out = Vec::new();
        for family in DocumentFamily::ALL {
            let (events, _, snap) = super::consents::snapshot(conn, &pseudonym, family, now)?;
            if events.is_empty() {
                continue;
            }
            let version = match snap.version_in_force {
                Some(n) => ctx.versions.load(conn, DocumentVersionId::new(family, n))?,
                None => None,
            };
            let items = version
                .iter()
                .flat_map(|v| v.active_items())
                .filter_map(|item| {
                    let state = snap.items.iter().find(|s| s.key == item.key)?.clone();
                    Some(ItemConsent {
                        needs_own_consent: state.lapsed_at_majority(&person, now),
                        item: item.clone(),
                        state,
                    })
                })
                .collect();
            out.push(FamilyConsent {
                family,
                status: snap.status,
                version,
                items,
            });
        }
        Ok(out)
    })
}

/// What the patient withdraws from the portal: a whole family, or items.
pub struct OwnWithdrawal {
    pub family: crate::consent::DocumentFamily,
    /// `None`: everything in the family.
    pub items: Option<Vec<crate::consent::ScopeItemKey>>,
    /// The confirmation page's one-time key: submitting the form twice
    /// records one withdrawal.
    pub key: String,
    /// The statement the patient confirmed, exactly as shown.
    pub statement: String,
}

/// Who is named as having explained a withdrawal the patient made alone.
pub const PORTAL_EXPLAINER: &str = "patient-portal";

/// The calling patient withdraws their own consent, or items of it. It is
/// a consent event like any withdrawal (logged, notified, and followed by
/// recall notices in the same transaction), signed by the patient, with
/// the hash of the statement they confirmed as its form.
pub fn withdraw_own(
    ctx: &Context,
    caller: &Caller,
    withdrawal: OwnWithdrawal,
) -> Result<super::consents::Recorded, AppError> {
    use super::consents::{Retry, Signature, SignerKind, Withdrawal};
    let (pseudonym, _) = ctx.read(|conn| patient_self(ctx, conn, caller))?;
    let patient = crate::pseudonym::PatientPseudonym::parse(&pseudonym)
        .ok_or_else(|| AppError::internal("stored pseudonym"))?;
    let items: Option<Vec<String>> = withdrawal
        .items
        .as_ref()
        .map(|keys| keys.iter().map(|k| k.to_string()).collect());
    let as_sent = serde_json::json!({
        "family": withdrawal.family.as_str(),
        "items": items,
        "statement": withdrawal.statement,
    });
    let form_hash = format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            as_sent.to_string().as_bytes()
        ))
    );
    super::consents::withdraw_under(
        ctx,
        caller,
        Withdrawal {
            patient,
            family: withdrawal.family,
            items: withdrawal.items,
            signature: Signature {
                signer: SignerKind::Patient,
                relationship: None,
                explained_by: PORTAL_EXPLAINER.to_owned(),
                signed_at: ctx.now(),
                form_hash,
            },
            retry: Retry {
                key: withdrawal.key,
                as_sent,
            },
        },
        crate::auth::policy::Action::ConsentWithdrawOwn,
    )
}
