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
    /// What the members must do, and why in words matching the notice's
    /// `reason`, in Japanese and English.
    pub instruction: RecallInstruction,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecallInstruction {
    pub ja: String,
    pub en: String,
}

impl RecallDelivery {
    pub fn new(number: i64, row: RecallRow) -> Self {
        let instruction = RecallInstruction::for_reason(&row.reason);
        RecallDelivery {
            id: format!("recall-{number}"),
            application: row.application_id.clone(),
            notice: RecallNotice::from(row),
            instruction,
        }
    }
}

impl RecallInstruction {
    /// What the members must do, with why in words that match the notice's
    /// reason: a member told "withdrew" when an organization was
    /// re-registered as industry would misreport it to their ethics board.
    /// The order is the same whatever the reason: stop and delete.
    pub fn for_reason(reason: &str) -> RecallInstruction {
        use crate::access::cohort::Exclusion;
        let (ja, en) = match Exclusion::parse(reason) {
            Some(Exclusion::ConsentWithdrawn) => (
                "このサンプルの提供者が同意を撤回しました。",
                "The person behind this sample withdrew their consent.",
            ),
            Some(Exclusion::ReachedMajority) => (
                "このサンプルは未成年の間に代諾者の同意で提供されました。提供者は成年に達し、本人の同意はまだありません。",
                "This sample was released on a guardian's consent while the person was a minor; they have come of age and have not consented themselves.",
            ),
            Some(Exclusion::IndustryUseNotConsented) => (
                "このサンプルの提供者は企業による利用に同意していません。この申請は現在、企業による利用として扱われます。",
                "The person behind this sample did not consent to use by companies, which this application's use now is.",
            ),
            Some(Exclusion::AcademicUseNotConsented) => (
                "このサンプルの提供者は学術研究での利用に同意していません。",
                "The person behind this sample did not consent to academic use.",
            ),
            Some(Exclusion::InternationalTransferNotConsented) => (
                "このサンプルの提供者は海外への提供に同意していません。この申請には現在、海外の受領者がいます。",
                "The person behind this sample did not consent to their data going abroad, and this application now has a recipient abroad.",
            ),
            Some(Exclusion::NeedsReconsent) => (
                "このサンプルは、その後に内容が大きく変わった説明文書への同意で提供されました。提供者の新しい同意はまだありません。",
                "This sample was released on consent to a wording that has since changed materially, and the person has not consented to the new one.",
            ),
            Some(Exclusion::ConsentUnknown | Exclusion::OutsideDiseaseScope) | None => (
                "このサンプルの提供者の現在の同意は、この利用を認めていません。",
                "The consent of the person behind this sample no longer permits this use.",
            ),
        };
        RecallInstruction {
            ja: format!(
                "{ja}このサンプルのデータの利用を直ちに停止し、保有するデータを削除してください。"
            ),
            en: format!(
                "{en} Stop using this sample's data at once and delete what you hold of it."
            ),
        }
    }
}

/// One Server-Sent Events frame.
/// The kinds of access a patient may choose to be emailed about. The
/// portal shows every access whatever the choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// Their consent recorded, changed, withdrawn or lapsed; their status.
    Consent,
    /// Someone read or looked up their consent record.
    Read,
    /// Their data released to a data-use project, or served to it.
    Use,
    /// Recontact requests about them.
    Recontact,
    /// Their enquiries opened or answered.
    Enquiry,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 5] = [
        Self::Consent,
        Self::Read,
        Self::Use,
        Self::Recontact,
        Self::Enquiry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consent => "consent",
            Self::Read => "read",
            Self::Use => "use",
            Self::Recontact => "recontact",
            Self::Enquiry => "enquiry",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    /// The kind of an entry's action.
    pub fn of(action: crate::ledger::entry::LogAction) -> Self {
        use crate::ledger::entry::LogAction as A;
        match action {
            A::ConsentRead | A::PatientLookup => Self::Read,
            A::ConsentRegister
            | A::ConsentChange
            | A::ConsentWithdraw
            | A::ConsentLapse
            | A::PatientStatusChange => Self::Consent,
            A::DatasetRelease | A::HandleResolve => Self::Use,
            A::RecontactOpen | A::RecontactApprove | A::RecontactReject | A::RecontactUnseal => {
                Self::Recontact
            }
            A::EnquiryRead | A::EnquiryAnswer => Self::Enquiry,
        }
    }

    /// Kinds as stored, comma-separated; unknown words are dropped.
    pub fn parse_list(stored: &str) -> Vec<Self> {
        stored.split(',').filter_map(Self::parse).collect()
    }

    pub fn list(kinds: &[Self]) -> String {
        kinds
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The email a patient gets about a new entry: that there is one, and
/// where to look. No health data, pseudonym or organization: an inbox is
/// not a place for them.
pub fn email_text(portal_url: &str) -> (String, String) {
    let subject =
        "GenomeGate: 新しい利用記録があります / A new entry in your access record".to_owned();
    let body = format!(
        "あなたのデータの利用記録に、新しい記録が追加されました。\n\
         内容は患者ポータルでご確認ください。\n\
         {portal_url}\n\n\
         A new entry was added to the record of who used your data.\n\
         Please read it in your patient portal.\n\
         {portal_url}\n\n\
         このメールは、あなたがポータルで選んだ設定により送られています。設定はポータルで変えられます。\n\
         You receive this because you asked for it in the portal, where you can change it.\n"
    );
    (subject, body)
}

pub fn sse_frame(n: &Notification) -> String {
    let data = serde_json::to_string(n).unwrap_or_default();
    format!("id: {}\nevent: access\ndata: {data}\n\n", n.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every action has a kind a patient can choose, and kinds read back.
    #[test]
    fn notice_kinds_cover_every_action_and_read_back() {
        use crate::ledger::entry::LogAction;
        for action in LogAction::ALL {
            assert!(NoticeKind::ALL.contains(&NoticeKind::of(action)));
        }
        let all = NoticeKind::list(&NoticeKind::ALL);
        assert_eq!(NoticeKind::parse_list(&all), NoticeKind::ALL.to_vec());
        assert_eq!(
            NoticeKind::parse_list("read,unknown,use"),
            vec![NoticeKind::Read, NoticeKind::Use]
        );
    }

    /// The email names neither the patient nor the data nor who used it.
    #[test]
    fn the_email_says_only_that_there_is_an_entry() {
        let (subject, body) = email_text("https://portal.example/portal/history");
        assert!(body.contains("https://portal.example/portal/history"));
        for word in ["cancer", "がん", "hospital", "dataset"] {
            assert!(!subject.contains(word) && !body.contains(word), "{word}");
        }
    }
    use crate::access::cohort::Exclusion;

    #[test]
    fn every_exclusion_code_reads_back() {
        for why in Exclusion::ALL {
            assert_eq!(Exclusion::parse(why.as_str()), Some(why));
        }
        assert_eq!(Exclusion::parse("withdrawn"), None);
    }

    #[test]
    fn a_recall_says_why_in_the_words_of_its_reason() {
        let say = |reason: &str| RecallInstruction::for_reason(reason).en;
        assert!(say("consent_withdrawn").contains("withdrew"));
        assert!(say("reached_majority").contains("come of age"));
        assert!(say("industry_use_not_consented").contains("companies"));
        assert!(say("international_transfer_not_consented").contains("abroad"));
        assert!(say("needs_reconsent").contains("changed materially"));
        // Only a withdrawal is called one.
        for why in Exclusion::ALL {
            if why != Exclusion::ConsentWithdrawn {
                assert!(!say(why.as_str()).contains("withdr"), "{why:?}");
            }
        }
        // Whatever the reason, and for a code this build does not know,
        // the order is to stop and delete, in both languages.
        let reasons = Exclusion::ALL.map(Exclusion::as_str);
        for reason in reasons.iter().copied().chain(["a_future_reason"]) {
            let instruction = RecallInstruction::for_reason(reason);
            assert!(instruction.en.ends_with("delete what you hold of it."));
            assert!(instruction.ja.ends_with("削除してください。"));
        }
        let distinct: std::collections::BTreeSet<_> = reasons.iter().map(|r| say(r)).collect();
        // Unknown consent and the disease scope share the general wording.
        assert_eq!(distinct.len(), reasons.len() - 1);
    }

    #[test]
    fn a_delivery_carries_its_notices_instruction() {
        let row = RecallRow {
            id: "register-1:rel-1:7".into(),
            application_id: "app-1".into(),
            release_id: "rel-1".into(),
            project_sample_id: "ps-1".into(),
            reason: "industry_use_not_consented".into(),
            created_at: chrono::NaiveDateTime::default(),
        };
        let delivery = RecallDelivery::new(3, row);
        assert_eq!(delivery.id, "recall-3");
        assert_eq!(
            delivery.instruction.en,
            RecallInstruction::for_reason("industry_use_not_consented").en
        );
    }
}
