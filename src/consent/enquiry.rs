//! A patient's enquiries (お問い合わせ): a question to their hospital, or a
//! report to the governance body that an access looks wrong or that they
//! met genetic discrimination (003:370-428). Pure rules: who answers each
//! kind, and the states the patient follows.

/// What the patient sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnquiryKind {
    /// A question about their consent or their data.
    Question,
    /// A report that an entry of their access history looks wrong.
    WrongAccess,
    /// A report of unfair treatment because of their genetic information.
    Discrimination,
}

/// Who reads and answers an enquiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// Staff of the patient's own hospital.
    Hospital,
    /// The governance body, which oversees every hospital and user.
    Governance,
}

impl EnquiryKind {
    pub const ALL: [EnquiryKind; 3] = [Self::Question, Self::WrongAccess, Self::Discrimination];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Question => "question",
            Self::WrongAccess => "wrong_access",
            Self::Discrimination => "discrimination",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    /// Questions go to the hospital that knows the patient. Reports go to
    /// the governance body: a report may concern the hospital itself.
    pub fn handler(self) -> Handler {
        match self {
            Self::Question => Handler::Hospital,
            Self::WrongAccess | Self::Discrimination => Handler::Governance,
        }
    }
}

/// Where an enquiry stands, as the patient sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnquiryState {
    /// Sent; nobody has opened it yet.
    Sent,
    /// Opened by the staff who answer it.
    Read,
    /// Answered. Staff may answer again, and it stays answered.
    Answered,
}

impl EnquiryState {
    pub const ALL: [EnquiryState; 3] = [Self::Sent, Self::Read, Self::Answered];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Read => "read",
            Self::Answered => "answered",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// After staff open it: an answered enquiry stays answered.
    pub fn opened(self) -> Self {
        match self {
            Self::Sent | Self::Read => Self::Read,
            Self::Answered => Self::Answered,
        }
    }

    /// After staff answer it, from any state: answering needs the text, so
    /// it is opened on the way.
    pub fn answered(self) -> Self {
        Self::Answered
    }
}

/// Who wrote one message of an enquiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Author {
    Patient,
    Staff,
}

impl Author {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patient => "patient",
            Self::Staff => "staff",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Patient, Self::Staff]
            .into_iter()
            .find(|a| a.as_str() == raw)
    }
}

/// The longest message either side may write, in characters.
pub const MESSAGE_MAX_CHARS: usize = 4000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_states_read_back_from_their_codes() {
        for kind in EnquiryKind::ALL {
            assert_eq!(EnquiryKind::parse(kind.as_str()), Some(kind));
        }
        for state in EnquiryState::ALL {
            assert_eq!(EnquiryState::parse(state.as_str()), Some(state));
        }
        for author in [Author::Patient, Author::Staff] {
            assert_eq!(Author::parse(author.as_str()), Some(author));
        }
        assert_eq!(EnquiryKind::parse("complaint"), None);
    }

    #[test]
    fn questions_go_to_the_hospital_and_reports_to_governance() {
        assert_eq!(EnquiryKind::Question.handler(), Handler::Hospital);
        assert_eq!(EnquiryKind::WrongAccess.handler(), Handler::Governance);
        assert_eq!(EnquiryKind::Discrimination.handler(), Handler::Governance);
    }

    #[test]
    fn opening_never_takes_back_an_answer() {
        assert_eq!(EnquiryState::Sent.opened(), EnquiryState::Read);
        assert_eq!(EnquiryState::Read.opened(), EnquiryState::Read);
        assert_eq!(EnquiryState::Answered.opened(), EnquiryState::Answered);
        for state in EnquiryState::ALL {
            assert_eq!(state.answered(), EnquiryState::Answered);
        }
    }
}
