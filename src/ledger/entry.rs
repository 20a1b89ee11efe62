//! One access-log entry: who touched which patient's data, when, why, and on
//! what legal basis. Its canonical JSON bytes are the Merkle leaf input, so
//! the bytes are stored exactly as written and never re-serialized.
//!
//! Entries name the patient by pseudonym only and never carry consent
//! decisions, hospital-local IDs or genome references beyond the service's
//! own identifiers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Bumped when the entry layout changes; verifiers accept every version they
/// know.
pub const ENTRY_FORMAT: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// The organization the actor acted for (token `org`).
    pub org: String,
    /// The role the action needed, e.g. `hospital_staff`.
    pub role: String,
    /// The person or system (token `sub`).
    pub user: String,
}

/// The actor role of what the service does by itself, never a caller's:
/// no token can carry it, so screening can tell it from any caller's.
pub const SERVICE_ROLE: &str = "service";

impl Actor {
    /// The service acting on its own, as `task` (e.g. the daily
    /// coming-of-age sweep).
    pub fn service(task: &str) -> Self {
        Actor {
            org: "genomegate".to_owned(),
            role: SERVICE_ROLE.to_owned(),
            user: task.to_owned(),
        }
    }
}

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogAction {
    ConsentRead,
    ConsentRegister,
    ConsentChange,
    ConsentWithdraw,
    PatientLookup,
    PatientStatusChange,
    RecontactOpen,
    RecontactApprove,
    RecontactReject,
    RecontactUnseal,
    DatasetRelease,
    HandleResolve,
    /// The service noted that a proxy's permits lapsed when the patient
    /// came of age (decision 0026): no one touched the data; the patient is
    /// told that only their own consent counts now.
    ConsentLapse,
    /// Staff opened a patient's enquiry to answer it.
    EnquiryRead,
    /// Staff answered a patient's enquiry.
    EnquiryAnswer,
}

impl LogAction {
    pub const ALL: [LogAction; 15] = [
        LogAction::ConsentRead,
        LogAction::ConsentRegister,
        LogAction::ConsentChange,
        LogAction::ConsentWithdraw,
        LogAction::PatientLookup,
        LogAction::PatientStatusChange,
        LogAction::RecontactOpen,
        LogAction::RecontactApprove,
        LogAction::RecontactReject,
        LogAction::RecontactUnseal,
        LogAction::DatasetRelease,
        LogAction::HandleResolve,
        LogAction::ConsentLapse,
        LogAction::EnquiryRead,
        LogAction::EnquiryAnswer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LogAction::ConsentRead => "consent_read",
            LogAction::ConsentRegister => "consent_register",
            LogAction::ConsentChange => "consent_change",
            LogAction::ConsentWithdraw => "consent_withdraw",
            LogAction::PatientLookup => "patient_lookup",
            LogAction::PatientStatusChange => "patient_status_change",
            LogAction::RecontactOpen => "recontact_open",
            LogAction::RecontactApprove => "recontact_approve",
            LogAction::RecontactReject => "recontact_reject",
            LogAction::RecontactUnseal => "recontact_unseal",
            LogAction::DatasetRelease => "dataset_release",
            LogAction::HandleResolve => "handle_resolve",
            LogAction::ConsentLapse => "consent_lapse",
            LogAction::EnquiryRead => "enquiry_read",
            LogAction::EnquiryAnswer => "enquiry_answer",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == raw)
    }

    /// Reads are the only actions that need no consent of their own: the
    /// treating hospital may look at what its patient agreed to.
    pub fn is_read(self) -> bool {
        matches!(self, LogAction::ConsentRead | LogAction::PatientLookup)
    }

    /// Actions the treating hospital takes as the keeper of its patient's
    /// record, on no consent of the patient's: its reads, and recording
    /// that the patient is a minor or has died.
    pub fn is_treating_hospitals_own(self) -> bool {
        self.is_read() || self == LogAction::PatientStatusChange
    }
}

/// Why it was done. Research purposes carry their DUO code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Recording or checking the patient's consent at their hospital.
    ConsentManagement,
    /// Contacting the patient again about a finding.
    Recontact,
    /// Research under a data-use agreement, with its DUO purpose code.
    Research { duo: String },
    /// Answering an enquiry the patient sent.
    Enquiry,
}

/// What made it lawful.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    /// The patient's consent on a document version; `items` are the scope
    /// items relied on (empty for a whole-record action).
    Consent { version: String, items: Vec<String> },
    /// A data-use agreement.
    Agreement { id: String },
    /// The hospital that registered the patient, acting for them.
    TreatingHospital { hospital: String },
    /// A recontact request approved by committee and two approvers.
    RecontactApproval { request: String },
    /// Oversight by an auditor under the governance rules.
    Oversight,
    /// The patient's own enquiry, which asks for an answer.
    PatientEnquiry { enquiry: String },
}

/// Which data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataScope {
    /// The consent record of one document family.
    ConsentRecord { family: String },
    /// The consent summaries and sample list of a patient.
    PatientSummary,
    /// The patient's day of majority and day of death (never the days
    /// themselves: the entry names only what was touched).
    PatientStatus,
    /// One sample's identity link (recontact).
    Sample { genome_id: String },
    /// The patient's sealed hospital identity, opened for recontact.
    Identity,
    /// Objects of a released dataset.
    Dataset { dataset: String, objects: u32 },
    /// An enquiry the patient sent, of one kind (`question`,
    /// `wrong_access`, `discrimination`).
    Enquiry { kind: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    pub format: u8,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub action: LogAction,
    pub purpose: Purpose,
    pub legal_basis: LegalBasis,
    /// The patient's pseudonym.
    pub patient: String,
    pub scope: DataScope,
}

#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("entry is not valid JSON of a known format: {0}")]
    Malformed(String),
    #[error("entry format {0} is unknown")]
    UnknownFormat(u8),
}

impl LogEntry {
    /// The canonical bytes: JSON with fields in declaration order.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain structs and enums cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EntryError> {
        let entry: LogEntry =
            serde_json::from_slice(bytes).map_err(|e| EntryError::Malformed(e.to_string()))?;
        if entry.format != ENTRY_FORMAT {
            return Err(EntryError::UnknownFormat(entry.format));
        }
        Ok(entry)
    }
}

/// The fields an entry's indexed columns repeat, read without copying the
/// rest of the entry: `verify-log` reads a million of them.
#[derive(Debug, Deserialize)]
pub struct IndexedFields<'a> {
    format: u8,
    pub at: DateTime<Utc>,
    #[serde(borrow)]
    pub actor: ActorFields<'a>,
    pub action: LogAction,
    #[serde(borrow)]
    pub patient: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
pub struct ActorFields<'a> {
    #[serde(borrow)]
    pub org: Cow<'a, str>,
    #[serde(borrow)]
    pub user: Cow<'a, str>,
}

impl<'a> IndexedFields<'a> {
    /// `None` when the bytes are not an entry of a known format.
    pub fn read(bytes: &'a [u8]) -> Option<Self> {
        serde_json::from_slice::<Self>(bytes)
            .ok()
            .filter(|f| f.format == ENTRY_FORMAT)
    }
}

/// Interface language for explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    Ja,
    En,
}

impl Language {
    pub const ALL: [Language; 2] = [Language::Ja, Language::En];

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == raw)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Ja => "ja",
            Language::En => "en",
        }
    }
}

/// A patient-facing account of one entry, in one language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Who: the role and person.
    pub who: String,
    /// Which organization.
    pub organization: String,
    pub what: String,
    pub purpose: String,
    /// The consent, agreement or approval that allowed it.
    pub basis: String,
    /// When, as RFC 3339 UTC.
    pub when: String,
    /// One sentence joining the above.
    pub summary: String,
}

fn role_name(role: &str, lang: Language) -> String {
    let (ja, en) = match role {
        "hospital_staff" => ("病院の職員", "hospital staff"),
        "researcher" => ("研究者", "a researcher"),
        "review_committee" => ("審査委員会の委員", "a review committee member"),
        "governance" => ("管理機関の担当者", "a governance officer"),
        "auditor" => ("監査担当者", "an auditor"),
        "sequencing_center" => ("解析機関", "a sequencing centre"),
        "data_store" => (
            "ゲノムデータ保管機関・解析環境",
            "the genome data store or research environment",
        ),
        SERVICE_ROLE => ("GenomeGate のシステム", "the GenomeGate service"),
        other => (other, other),
    };
    match lang {
        Language::Ja => ja.to_owned(),
        Language::En => en.to_owned(),
    }
}

fn family_name(family: &str, lang: Language) -> &str {
    match (family, lang) {
        ("cancer", Language::Ja) => "がん",
        ("rare_disease", Language::Ja) => "難病",
        ("cancer", Language::En) => "cancer",
        ("rare_disease", Language::En) => "rare disease",
        (other, _) => other,
    }
}

fn enquiry_name(kind: &str, lang: Language) -> &str {
    match (kind, lang) {
        ("question", Language::Ja) => "あなたの病院へのご質問",
        ("question", Language::En) => "your question to your hospital",
        ("wrong_access", Language::Ja) => "誤った利用についてのあなたの報告",
        ("wrong_access", Language::En) => "your report of a wrong access",
        ("discrimination", Language::Ja) => "遺伝的差別についてのあなたの報告",
        ("discrimination", Language::En) => "your report of genetic discrimination",
        (other, _) => other,
    }
}

/// Explains an entry to the patient it concerns, in plain words.
pub fn explain(entry: &LogEntry, lang: Language) -> Explanation {
    use Language::{En, Ja};
    let who = format!(
        "{} ({})",
        role_name(&entry.actor.role, lang),
        entry.actor.user
    );
    let organization = entry.actor.org.clone();
    let scope = match (&entry.scope, lang) {
        (DataScope::ConsentRecord { family }, Ja) => {
            format!("あなたの同意の記録（{}）", family_name(family, lang))
        }
        (DataScope::ConsentRecord { family }, En) => {
            format!("your {} consent record", family_name(family, lang))
        }
        (DataScope::PatientSummary, Ja) => "あなたの同意と検体の一覧".to_owned(),
        (DataScope::PatientSummary, En) => "the list of your consents and samples".to_owned(),
        (DataScope::PatientStatus, Ja) => "あなたが成年に達する日と死亡日の記録".to_owned(),
        (DataScope::PatientStatus, En) => {
            "the record of the day you come of age and the day of death".to_owned()
        }
        (DataScope::Sample { genome_id }, Ja) => format!("検体 {genome_id} の情報"),
        (DataScope::Sample { genome_id }, En) => format!("sample {genome_id}"),
        (DataScope::Identity, Ja) => "病院での患者番号（再連絡のため）".to_owned(),
        (DataScope::Identity, En) => "your hospital patient number (to contact you)".to_owned(),
        (DataScope::Dataset { dataset, objects }, Ja) => {
            format!("データセット {dataset} のあなたのデータ {objects} 件")
        }
        (DataScope::Dataset { dataset, objects }, En) => {
            format!("{objects} of your data objects in dataset {dataset}")
        }
        (DataScope::Enquiry { kind }, lang) => enquiry_name(kind, lang).to_owned(),
    };
    let what = match (entry.action, lang) {
        (LogAction::ConsentRead, Ja) => format!("{scope}を閲覧しました"),
        (LogAction::ConsentRead, En) => format!("read {scope}"),
        (LogAction::ConsentRegister, Ja) => format!("{scope}を登録しました"),
        (LogAction::ConsentRegister, En) => format!("registered {scope}"),
        (LogAction::ConsentChange, Ja) => format!("{scope}を変更しました"),
        (LogAction::ConsentChange, En) => format!("changed {scope}"),
        (LogAction::ConsentWithdraw, Ja) => format!("{scope}に撤回を記録しました"),
        (LogAction::ConsentWithdraw, En) => format!("recorded a withdrawal in {scope}"),
        (LogAction::PatientLookup, Ja) => format!("{scope}を確認しました"),
        (LogAction::PatientLookup, En) => format!("looked up {scope}"),
        (LogAction::PatientStatusChange, Ja) => format!("{scope}を更新しました"),
        (LogAction::PatientStatusChange, En) => format!("updated {scope}"),
        (LogAction::RecontactOpen, Ja) => format!("{scope}について再連絡を申請しました"),
        (LogAction::RecontactOpen, En) => format!("asked to contact you about {scope}"),
        (LogAction::RecontactApprove, Ja) => "再連絡の申請を承認しました".to_owned(),
        (LogAction::RecontactApprove, En) => "approved a request to contact you".to_owned(),
        (LogAction::RecontactReject, Ja) => "再連絡の申請を却下しました".to_owned(),
        (LogAction::RecontactReject, En) => "rejected a request to contact you".to_owned(),
        (LogAction::RecontactUnseal, Ja) => format!("{scope}を開示しました"),
        (LogAction::RecontactUnseal, En) => format!("opened {scope}"),
        (LogAction::DatasetRelease, Ja) => format!("{scope}を提供しました"),
        (LogAction::DatasetRelease, En) => format!("released {scope}"),
        (LogAction::HandleResolve, Ja) => format!("{scope}を読み出しました"),
        (LogAction::HandleResolve, En) => format!("retrieved {scope}"),
        (LogAction::ConsentLapse, Ja) => format!(
            "あなたが成年に達したため、未成年のあなたに代わって代諾者が{scope}で同意した項目を、あなた自身が同意するまで適用しないことにしました"
        ),
        (LogAction::ConsentLapse, En) => format!(
            "set aside, until you consent yourself, what your proxy permitted in {scope} while you were a minor, since you have come of age,"
        ),
        (LogAction::EnquiryRead, Ja) => format!("{scope}を開きました"),
        (LogAction::EnquiryRead, En) => format!("opened {scope}"),
        (LogAction::EnquiryAnswer, Ja) => format!("{scope}に回答しました"),
        (LogAction::EnquiryAnswer, En) => format!("answered {scope}"),
    };
    let purpose = match (&entry.purpose, lang) {
        (Purpose::ConsentManagement, Ja) => "同意の管理のため".to_owned(),
        (Purpose::ConsentManagement, En) => "to manage your consent".to_owned(),
        (Purpose::Recontact, Ja) => "あなたに改めて連絡するため".to_owned(),
        (Purpose::Recontact, En) => "to contact you again".to_owned(),
        (Purpose::Research { duo }, Ja) => format!("研究のため（目的コード {duo}）"),
        (Purpose::Research { duo }, En) => format!("for research (purpose code {duo})"),
        (Purpose::Enquiry, Ja) => "あなたのお問い合わせに答えるため".to_owned(),
        (Purpose::Enquiry, En) => "to answer you".to_owned(),
    };
    let basis = match (&entry.legal_basis, lang) {
        (LegalBasis::Consent { version, .. }, Ja) => format!("あなたの同意（{version}）"),
        (LegalBasis::Consent { version, .. }, En) => format!("your consent ({version})"),
        (LegalBasis::Agreement { id }, Ja) => format!("データ利用契約 {id}"),
        (LegalBasis::Agreement { id }, En) => format!("data-use agreement {id}"),
        (LegalBasis::TreatingHospital { hospital }, Ja) => {
            format!("あなたが同意を登録した病院（{hospital}）としての業務")
        }
        (LegalBasis::TreatingHospital { hospital }, En) => {
            format!("the work of your registering hospital ({hospital})")
        }
        (LegalBasis::RecontactApproval { request }, Ja) => {
            format!("委員会と2名の承認を得た再連絡申請 {request}")
        }
        (LegalBasis::Oversight, Ja) => "監査規程に基づく監督".to_owned(),
        (LegalBasis::Oversight, En) => "oversight under the audit rules".to_owned(),
        (LegalBasis::RecontactApproval { request }, En) => {
            format!("recontact request {request}, approved by the committee and two approvers")
        }
        (LegalBasis::PatientEnquiry { enquiry }, Ja) => format!("あなたのお問い合わせ {enquiry}"),
        (LegalBasis::PatientEnquiry { enquiry }, En) => format!("your enquiry {enquiry}"),
    };
    let when = entry.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let summary = match lang {
        Ja => format!("{when}、{organization} の{who}が、{purpose}、{what}。根拠：{basis}。"),
        En => format!("On {when}, {who} at {organization} {what} {purpose}, under {basis}."),
    };
    Explanation {
        who,
        organization,
        what,
        purpose,
        basis,
        when,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_entry() -> LogEntry {
        LogEntry {
            format: ENTRY_FORMAT,
            at: DateTime::from_timestamp(1_763_700_000, 123_456_000).unwrap(),
            actor: Actor {
                org: "hosp-a".into(),
                role: "hospital_staff".into(),
                user: "staff-1".into(),
            },
            action: LogAction::ConsentRead,
            purpose: Purpose::ConsentManagement,
            legal_basis: LegalBasis::TreatingHospital {
                hospital: "hosp-a".into(),
            },
            patient: "ab".repeat(32),
            scope: DataScope::ConsentRecord {
                family: "cancer".into(),
            },
        }
    }

    #[test]
    fn indexed_fields_read_what_the_entry_says() {
        let mut entry = sample_entry();
        // An escaped character cannot be borrowed; it must still compare.
        entry.actor.user = "staff \"1\" \u{30b9}".into();
        let bytes = entry.to_bytes();
        let fields = IndexedFields::read(&bytes).unwrap();
        assert_eq!(fields.at, entry.at);
        assert_eq!(fields.actor.org, "hosp-a");
        assert_eq!(fields.actor.user, entry.actor.user);
        assert_eq!(fields.action, LogAction::ConsentRead);
        assert_eq!(fields.patient, entry.patient);

        let other_format =
            String::from_utf8(bytes)
                .unwrap()
                .replacen("\"format\":1", "\"format\":9", 1);
        assert!(IndexedFields::read(other_format.as_bytes()).is_none());
        assert!(IndexedFields::read(b"{\"forged\":1}").is_none());
    }

    #[test]
    fn bytes_round_trip_and_are_stable() {
        let entry = sample_entry();
        let bytes = entry.to_bytes();
        assert_eq!(LogEntry::from_bytes(&bytes).unwrap(), entry);
        assert_eq!(LogEntry::from_bytes(&bytes).unwrap().to_bytes(), bytes);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with(r#"{"format":1,"at":"2025-11-21T04:40:00.123456Z","actor""#),
            "{text}"
        );
    }

    #[test]
    fn unknown_fields_and_formats_are_refused() {
        let mut value = serde_json::to_value(sample_entry()).unwrap();
        value["extra"] = 1.into();
        assert!(LogEntry::from_bytes(value.to_string().as_bytes()).is_err());
        let mut entry = sample_entry();
        entry.format = 9;
        assert!(matches!(
            LogEntry::from_bytes(&entry.to_bytes()),
            Err(EntryError::UnknownFormat(9))
        ));
    }

    #[test]
    fn explanations_name_who_where_why_and_when_in_both_languages() {
        let entry = sample_entry();
        let en = explain(&entry, Language::En);
        assert_eq!(
            en.summary,
            "On 2025-11-21T04:40:00Z, hospital staff (staff-1) at hosp-a read your cancer consent record to manage your consent, under the work of your registering hospital (hosp-a)."
        );
        let ja = explain(&entry, Language::Ja);
        assert!(
            ja.summary.contains("hosp-a の病院の職員 (staff-1)が"),
            "{}",
            ja.summary
        );
        assert!(ja.what.contains("がん"));
        let mut research = entry.clone();
        research.purpose = Purpose::Research {
            duo: "DUO:0000042".into(),
        };
        research.legal_basis = LegalBasis::Agreement { id: "DUA-7".into() };
        let en = explain(&research, Language::En);
        assert!(en.purpose.contains("DUO:0000042") && en.basis.contains("DUA-7"));
    }

    #[test]
    fn a_lapse_at_majority_is_told_as_the_services_own_doing() {
        let mut lapse = sample_entry();
        lapse.actor = Actor::service("came-of-age-sweep");
        lapse.action = LogAction::ConsentLapse;
        lapse.legal_basis = LegalBasis::Consent {
            version: "cancer-v1".into(),
            items: vec!["research_industry".into()],
        };
        assert_eq!(
            LogAction::parse("consent_lapse"),
            Some(LogAction::ConsentLapse)
        );
        let en = explain(&lapse, Language::En);
        assert_eq!(
            en.summary,
            "On 2025-11-21T04:40:00Z, the GenomeGate service (came-of-age-sweep) at genomegate set aside, until you consent yourself, what your proxy permitted in your cancer consent record while you were a minor, since you have come of age, to manage your consent, under your consent (cancer-v1)."
        );
        let ja = explain(&lapse, Language::Ja);
        assert!(ja.who.starts_with("GenomeGate のシステム"), "{}", ja.who);
        assert!(
            ja.what.contains("代諾者") && ja.what.contains("成年"),
            "{}",
            ja.what
        );
    }
}
