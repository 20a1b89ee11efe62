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
