//! Committee review: votes, conditions, the decision rule from
//! `policies/data-use.toml`, and the application's states.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// A condition of use an approval can carry (DUO TS, MOR, PUB, RTN).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "code", try_from = "ConditionFields")]
pub enum Condition {
    /// Time limit: access ends this many months after it starts.
    #[serde(rename = "TS")]
    TimeLimit { months: u32 },
    /// Publication moratorium: no publication before this date.
    #[serde(rename = "MOR")]
    Moratorium { until: NaiveDate },
    /// Results must be published.
    #[serde(rename = "PUB")]
    Publication,
    /// Derived data must be returned to the repository.
    #[serde(rename = "RTN")]
    ReturnDerivedData,
}

/// A condition as written: its code and exactly the fields that code
/// takes (`TS` its months, `MOR` its date, `PUB` and `RTN` nothing).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionFields {
    code: String,
    #[serde(default, deserialize_with = "crate::integral::optional")]
    months: Option<u32>,
    #[serde(default)]
    until: Option<NaiveDate>,
}

impl TryFrom<ConditionFields> for Condition {
    type Error = String;

    fn try_from(c: ConditionFields) -> Result<Self, String> {
        match (c.code.as_str(), c.months, c.until) {
            ("TS", Some(months), None) => Ok(Condition::TimeLimit { months }),
            ("MOR", None, Some(until)) => Ok(Condition::Moratorium { until }),
            ("PUB", None, None) => Ok(Condition::Publication),
            ("RTN", None, None) => Ok(Condition::ReturnDerivedData),
            ("TS" | "MOR" | "PUB" | "RTN", _, _) => Err(format!(
                "{}: TS takes `months`, MOR `until`, PUB and RTN nothing",
                c.code
            )),
            (other, _, _) => Err(format!("unknown condition `{other}`")),
        }
    }
}

impl Condition {
    pub fn code(&self) -> &'static str {
        match self {
            Condition::TimeLimit { .. } => "TS",
            Condition::Moratorium { .. } => "MOR",
            Condition::Publication => "PUB",
            Condition::ReturnDerivedData => "RTN",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Vote {
    Approve,
    ApproveWithConditions { conditions: Vec<Condition> },
    Reject,
}

impl Vote {
    pub fn approves(&self) -> bool {
        !matches!(self, Vote::Reject)
    }
    pub fn conditions(&self) -> &[Condition] {
        match self {
            Vote::ApproveWithConditions { conditions } => conditions,
            _ => &[],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewRules {
    pub quorum: u32,
    pub approve_share: f64,
    pub standard_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum ReviewDecision {
    Approved,
    ApprovedWithConditions { conditions: Vec<Condition> },
    Rejected,
}

/// The decision once `votes` reach the quorum, or `None` while they don't.
/// Conditions of every approving vote apply together; for two time limits
/// the shorter one holds.
pub fn tally(rules: &ReviewRules, votes: &[Vote]) -> Option<ReviewDecision> {
    if votes.len() < rules.quorum as usize {
        return None;
    }
    let approvals = votes.iter().filter(|v| v.approves()).count();
    if (approvals as f64) <= rules.approve_share * votes.len() as f64 {
        return Some(ReviewDecision::Rejected);
    }
    let mut conditions: Vec<Condition> = Vec::new();
    for c in votes.iter().flat_map(|v| v.conditions()) {
        match (c, conditions.iter_mut().find(|k| k.code() == c.code())) {
            (Condition::TimeLimit { months }, Some(Condition::TimeLimit { months: existing })) => {
                *existing = (*existing).min(*months)
            }
            (Condition::Moratorium { until }, Some(Condition::Moratorium { until: existing })) => {
                *existing = (*existing).max(*until)
            }
            (_, Some(_)) => {}
            (c, None) => conditions.push(c.clone()),
        }
    }
    conditions.sort();
    Some(if conditions.is_empty() {
        ReviewDecision::Approved
    } else {
        ReviewDecision::ApprovedWithConditions { conditions }
    })
}

/// Where an application is. Every change is recorded with its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationState {
    /// Waiting for committee votes.
    UnderReview,
    Approved,
    ApprovedWithConditions,
    Rejected,
}

impl ApplicationState {
    pub const ALL: [ApplicationState; 4] = [
        ApplicationState::UnderReview,
        ApplicationState::Approved,
        ApplicationState::ApprovedWithConditions,
        ApplicationState::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationState::UnderReview => "under_review",
            ApplicationState::Approved => "approved",
            ApplicationState::ApprovedWithConditions => "approved_with_conditions",
            ApplicationState::Rejected => "rejected",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
    pub fn is_approved(self) -> bool {
        matches!(
            self,
            ApplicationState::Approved | ApplicationState::ApprovedWithConditions
        )
    }
}

/// Where a data-use agreement stands. The governance body suspends,
/// reinstates or revokes it; revocation is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgreementState {
    Active,
    /// Nothing is released or resolved until it is reinstated.
    Suspended,
    /// Final.
    Revoked,
}

impl AgreementState {
    pub const ALL: [AgreementState; 3] = [Self::Active, Self::Suspended, Self::Revoked];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

impl ReviewDecision {
    pub fn state(&self) -> ApplicationState {
        match self {
            ReviewDecision::Approved => ApplicationState::Approved,
            ReviewDecision::ApprovedWithConditions { .. } => {
                ApplicationState::ApprovedWithConditions
            }
            ReviewDecision::Rejected => ApplicationState::Rejected,
        }
    }
    pub fn conditions(&self) -> &[Condition] {
        match self {
            ReviewDecision::ApprovedWithConditions { conditions } => conditions,
            _ => &[],
        }
    }
}

/// Median and 90th percentile of durations in days (nearest rank), or
/// `None` for an empty list.
pub fn processing_percentiles(mut days: Vec<f64>) -> Option<(f64, f64)> {
    if days.is_empty() {
        return None;
    }
    days.sort_by(f64::total_cmp);
    let rank = |q: f64| {
        let idx = ((q * days.len() as f64).ceil() as usize).clamp(1, days.len()) - 1;
        days[idx]
    };
    Some((rank(0.5), rank(0.9)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_is_exactly_its_fields() {
        let read = |json: &str| serde_json::from_str::<Condition>(json);
        assert_eq!(
            read(r#"{"code": "TS", "months": 12.0}"#).unwrap(),
            Condition::TimeLimit { months: 12 }
        );
        assert_eq!(read(r#"{"code": "PUB"}"#).unwrap(), Condition::Publication);
        assert!(read(r#"{"code": "PUB", "months": 3}"#).is_err());
        assert!(read(r#"{"code": "TS", "months": 12, "until": "2027-01-01"}"#).is_err());
    }

    const RULES: ReviewRules = ReviewRules {
        quorum: 3,
        approve_share: 0.5,
        standard_days: 30,
    };

    #[test]
    fn no_decision_before_quorum_then_majority_rules() {
        assert_eq!(tally(&RULES, &[Vote::Approve, Vote::Approve]), None);
        assert_eq!(
            tally(&RULES, &[Vote::Approve, Vote::Approve, Vote::Reject]),
            Some(ReviewDecision::Approved)
        );
        assert_eq!(
            tally(&RULES, &[Vote::Approve, Vote::Reject, Vote::Reject]),
            Some(ReviewDecision::Rejected)
        );
        // A tie is not "more than half".
        let four = [Vote::Approve, Vote::Approve, Vote::Reject, Vote::Reject];
        assert_eq!(tally(&RULES, &four), Some(ReviewDecision::Rejected));
    }

    #[test]
    fn conditions_combine_strictest_first() {
        let votes = [
            Vote::ApproveWithConditions {
                conditions: vec![Condition::TimeLimit { months: 24 }, Condition::Publication],
            },
            Vote::ApproveWithConditions {
                conditions: vec![Condition::TimeLimit { months: 12 }],
            },
            Vote::Approve,
        ];
        assert_eq!(
            tally(&RULES, &votes),
            Some(ReviewDecision::ApprovedWithConditions {
                conditions: vec![Condition::TimeLimit { months: 12 }, Condition::Publication]
            })
        );
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        assert_eq!(processing_percentiles(vec![]), None);
        let days: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(processing_percentiles(days), Some((5.0, 9.0)));
    }
}
