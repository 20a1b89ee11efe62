//! Telling people their data was touched: the notification every log entry
//! produces, and the channels that carry it (live streams, webhooks, NATS).
//!
//! A notification is a receipt. It carries the exact entry bytes, their
//! inclusion proof and the signed checkpoint the proof leads to, so the
//! patient can later check, with a consistency proof, that the log never
//! dropped or rewrote it.

pub mod hub;
pub mod signing;
pub mod targets;

use crate::db::access::RecallRow;
use crate::db::ledger::{self, IndexedEntry};
use crate::db::DbConnection;
use crate::ledger::entry::{explain, Explanation, Language, LogEntry};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Explanations {
    #[schema(value_type = Object)]
    pub ja: Explanation,
    #[schema(value_type = Object)]
    pub en: Explanation,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Notification {
    /// Idempotency key: the same for every delivery of this entry.
    pub id: String,
    /// The entry's index in the log.
    pub index: u64,
    /// The parsed entry.
    #[schema(value_type = Object)]
    pub entry: LogEntry,
    /// The exact logged bytes, base64: SHA-256(0x00 ‖ bytes) is the leaf.
    pub entry_bytes: String,
    /// Audit path to the checkpoint's root, base64 hashes, leaf to root.
    pub inclusion_proof: Vec<String>,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// The C2SP signed checkpoint of `tree_size`.
    pub checkpoint: String,
    pub explanation: Explanations,
}

pub fn notification_id(index: u64) -> String {
    format!("log-{index}")
}

/// Builds the notifications of integrated entries, with proofs against the
/// checkpoint of `size` (`note`). Proof nodes come from one query.
pub fn build(
    conn: &mut DbConnection,
    entries: &[IndexedEntry],
    size: u64,
    note: &str,
) -> Result<Vec<(String, Notification)>, diesel::result::Error> {
    let indices: Vec<u64> = entries.iter().map(|e| e.idx).collect();
    let proofs = ledger::inclusion_proofs(conn, &indices, size)?;
    let mut out = Vec::with_capacity(entries.len());
    for (e, proof) in entries.iter().zip(proofs) {
        let Ok(entry) = LogEntry::from_bytes(&e.row.entry) else {
            tracing::error!(
                index = e.idx,
                "a logged entry does not parse; skipping its notification"
            );
            continue;
        };
        out.push((
            e.row.patient_pseudonym.clone(),
            Notification {
                id: notification_id(e.idx),
                index: e.idx,
                explanation: Explanations {
                    ja: explain(&entry, Language::Ja),
                    en: explain(&entry, Language::En),
                },
                entry,
                entry_bytes: STANDARD.encode(&e.row.entry),
                inclusion_proof: proof.iter().map(|h| STANDARD.encode(h)).collect(),
                tree_size: size,
                checkpoint: note.to_owned(),
            },
        ));
    }
    Ok(out)
}

/// A recall notice as an application's members see it: listed, and pushed
/// to the application's webhooks.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecallNotice {
    pub id: String,
    pub release: String,
    pub project_sample_id: String,
    /// Why this use may no longer have the sample, as in manifests and
    /// withheld samples: `consent_withdrawn`, `industry_use_not_consented`,
    /// `academic_use_not_consented`, `international_transfer_not_consented`,
    /// `needs_reconsent` or `reached_majority`. Stop using and delete this
    /// sample's data.
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

impl From<RecallRow> for RecallNotice {
    fn from(r: RecallRow) -> Self {
        RecallNotice {
            id: r.id,
            release: r.release_id,
            project_sample_id: r.project_sample_id,
            reason: r.reason,
            created_at: crate::db::documents::utc(r.created_at),
        }
    }
}

/// The body of a recall webhook: one notice, for one application.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecallDelivery {
    /// Idempotency key, `recall-<number>`: the same for every delivery of
    /// this notice.
    pub id: String,
    pub application: String,
    pub notice: RecallNotice,
    /// What the members must do, in Japanese and English.
    pub instruction: RecallInstruction,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecallInstruction {
    pub ja: &'static str,
    pub en: &'static str,
}

impl RecallDelivery {
    pub fn new(number: i64, row: RecallRow) -> Self {
        RecallDelivery {
            id: format!("recall-{number}"),
            application: row.application_id.clone(),
            notice: RecallNotice::from(row),
            instruction: RecallInstruction {
                ja: "このサンプルの提供者が同意を撤回しました。このサンプルのデータの利用を直ちに停止し、保有するデータを削除してください。",
                en: "The person behind this sample withdrew their consent. Stop using this sample's data at once and delete what you hold of it.",
            },
        }
    }
}

/// One Server-Sent Events frame.
pub fn sse_frame(n: &Notification) -> String {
    let data = serde_json::to_string(n).unwrap_or_default();
    format!("id: {}\nevent: access\ndata: {data}\n\n", n.index)
}
