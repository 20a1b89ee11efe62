//! Recontact (リコンタクト) under dual control: the states a request goes
//! through and the steps that move it. Pure rules; storage keeps both as
//! their text codes.

/// Approvals a request needs, each by a different governance officer, none
/// by the person who opened it.
pub const REQUIRED_APPROVALS: usize = 2;

/// Where a recontact request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecontactState {
    /// Opened; waiting for approvals.
    Pending,
    /// Approved twice; the patient's hospital may unseal.
    Approved,
    /// Closed for good.
    Rejected,
    /// The hospital has the local patient ID back. Closed.
    Unsealed,
}

impl RecontactState {
    pub const ALL: [RecontactState; 4] = [
        Self::Pending,
        Self::Approved,
        Self::Rejected,
        Self::Unsealed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Unsealed => "unsealed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// One recorded step of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecontactStep {
    Opened,
    Approved,
    Rejected,
    Unsealed,
}

impl RecontactStep {
    pub const ALL: [RecontactStep; 4] =
        [Self::Opened, Self::Approved, Self::Rejected, Self::Unsealed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Unsealed => "unsealed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_steps_read_back_from_their_codes() {
        for state in RecontactState::ALL {
            assert_eq!(RecontactState::parse(state.as_str()), Some(state));
        }
        for step in RecontactStep::ALL {
            assert_eq!(RecontactStep::parse(step.as_str()), Some(step));
        }
        assert_eq!(RecontactState::parse("Pending"), None);
    }
}
