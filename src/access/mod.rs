//! Data access: applications, DUO matching, committee review, data-use
//! agreements, consent-checked releases and dataset handles. Pure rules;
//! storage lives in `db::access`, HTTP in `api::access_requests`.

pub mod cohort;
pub mod duo;
pub mod handle;
pub mod manifest;
pub mod review;
pub mod visa;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

pub const POLICY_FILE: &str = "data-use.toml";
pub const DISEASES_FILE: &str = "diseases.toml";

/// `policies/data-use.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataUsePolicy {
    pub review: review::ReviewRules,
    pub release: ReleaseRules,
    pub transfer: TransferRules,
    pub purposes: PurposeRules,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRules {
    /// ISO 3166-1 alpha-2: organizations registered elsewhere are abroad.
    pub home_country: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRules {
    /// The minimum cohort size `k`.
    pub min_cohort: u32,
    pub handle_ttl_seconds: u32,
    pub audiences: Vec<String>,
    /// Whether a proxy's permit for a minor stops releasing their data once
    /// they come of age, until they consent themselves (decision 0026).
    pub proxy_consent_lapses_at_majority: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurposeRules {
    pub forbidden: Vec<String>,
}

impl DataUsePolicy {
    pub fn parse(text: &str) -> Result<Self, String> {
        let policy: DataUsePolicy =
            toml::from_str(text).map_err(|e| format!("data-use policy: {e}"))?;
        if policy.review.quorum == 0 {
            return Err("data-use policy: review.quorum must be at least 1".into());
        }
        if !(0.0..1.0).contains(&policy.review.approve_share) {
            return Err("data-use policy: review.approve_share must be in [0, 1)".into());
        }
        if policy.release.min_cohort == 0 {
            return Err("data-use policy: release.min_cohort must be at least 1".into());
        }
        if !(60..=86_400).contains(&policy.release.handle_ttl_seconds) {
            return Err("data-use policy: release.handle_ttl_seconds must be 60-86400".into());
        }
        if policy.release.audiences.is_empty() {
            return Err("data-use policy: release.audiences names no genome store".into());
        }
        let home = &policy.transfer.home_country;
        if home.len() != 2 || !home.chars().all(|c| c.is_ascii_uppercase()) {
            return Err("data-use policy: transfer.home_country must be an ISO 3166-1 alpha-2 code, e.g. JP".into());
        }
        Ok(policy)
    }

    /// Whether policy forbids the purpose named `purpose_code`: a name of
    /// `purposes.forbidden`, whatever its case, and with `-` or a space for
    /// `_` (`Insurance-Underwriting` is `insurance_underwriting`).
    pub fn forbids(&self, purpose_code: &str) -> bool {
        let named: String = purpose_code
            .trim()
            .chars()
            .map(|c| match c {
                '-' | ' ' => '_',
                c => c.to_ascii_lowercase(),
            })
            .collect();
        self.purposes
            .forbidden
            .iter()
            .any(|f| f.eq_ignore_ascii_case(&named))
    }

    /// Whether an organization verified in `country` receives data abroad.
    pub fn is_abroad(&self, country: &str) -> bool {
        country != self.transfer.home_country
    }

    /// What a use is now: as declared and decided at submission, or as the
    /// register says today of its member organizations (`(kind, country)`
    /// each), whichever is stricter (decision 0023). An organization
    /// re-registered as industry, or abroad, after approval makes the use so.
    pub fn use_now<'a>(
        &self,
        declared: UseKind,
        members: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> UseKind {
        members
            .into_iter()
            .fold(declared, |now, (kind, country)| UseKind {
                commercial: now.commercial || kind == INDUSTRY,
                abroad: now.abroad || self.is_abroad(country),
            })
    }
}

/// The verified organization type that makes a use commercial.
pub const INDUSTRY: &str = "industry";

/// The two facts about a use that each patient's consent answers
/// separately: industry use, and transfer abroad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UseKind {
    pub commercial: bool,
    pub abroad: bool,
}

impl UseKind {
    /// Whether this use needs a consent item that `before` did not: it
    /// became industrial, or a transfer abroad. Only such a change can
    /// take back what was released under `before`.
    pub fn asks_more_than(self, before: UseKind) -> bool {
        (self.commercial && !before.commercial) || (self.abroad && !before.abroad)
    }
}

/// The first instant of a declared period of use: the start of its first
/// day in the programme's calendar.
pub fn period_start(starts_on: NaiveDate) -> DateTime<Utc> {
    crate::calendar::start_of(starts_on)
}

/// The instant a declared period of use ends: the end of its last day in
/// the programme's calendar, so the whole last day is inside it.
pub fn period_end(ends_on: NaiveDate) -> DateTime<Utc> {
    crate::calendar::end_of(ends_on)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_policy_parses_and_bad_values_are_refused() {
        let text = include_str!("../../policies/data-use.toml");
        let policy = DataUsePolicy::parse(text).unwrap();
        assert!(policy.forbids("insurance_underwriting"));
        assert!(policy.forbids("INSURANCE_UNDERWRITING"));
        assert!(policy.forbids(" Employment-Decisions "));
        assert!(policy.forbids("reidentification"));
        assert!(!policy.forbids("HMB"));
        assert!(!policy.forbids("insurance"));
        let zero_k = text.replace("min_cohort = 5", "min_cohort = 0");
        assert!(DataUsePolicy::parse(&zero_k).is_err());
        assert!(!policy.is_abroad("JP"));
        assert!(policy.is_abroad("US"));
        let bad_home = text.replace("home_country = \"JP\"", "home_country = \"Japan\"");
        assert!(DataUsePolicy::parse(&bad_home).is_err());
    }

    #[test]
    fn a_use_is_as_strict_as_its_declaration_or_its_members_register_entries() {
        let policy = DataUsePolicy::parse(include_str!("../../policies/data-use.toml")).unwrap();
        let academic_home = [("academic", "JP"), ("public", "JP")];
        assert_eq!(
            policy.use_now(UseKind::default(), academic_home),
            UseKind::default()
        );
        let declared = UseKind {
            commercial: true,
            abroad: true,
        };
        assert_eq!(policy.use_now(declared, academic_home), declared);
        assert_eq!(
            policy.use_now(UseKind::default(), [("academic", "JP"), ("industry", "US")]),
            declared,
            "one industry member abroad makes the whole use so"
        );
    }

    #[test]
    fn only_a_new_industrial_or_abroad_use_asks_more() {
        let kind = |commercial, abroad| UseKind { commercial, abroad };
        assert!(kind(true, false).asks_more_than(kind(false, false)));
        assert!(kind(false, true).asks_more_than(kind(true, false)));
        assert!(!kind(true, true).asks_more_than(kind(true, true)));
        assert!(!kind(false, false).asks_more_than(kind(true, true)));
    }

    #[test]
    fn a_period_runs_from_its_first_midnight_to_the_midnight_after_its_last_day_in_japan() {
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            period_start(day("2027-01-01")).to_rfc3339(),
            "2026-12-31T15:00:00+00:00"
        );
        assert_eq!(
            period_end(day("2027-12-31")).to_rfc3339(),
            "2027-12-31T15:00:00+00:00"
        );
    }
}
