//! Which samples a release may include: each patient's consent *now*,
//! checked item by item. Unknown means no.

use super::duo::DiseaseHierarchy;
use crate::consent::state::{ConsentSnapshot, ConsentStatus, ItemBasis};
use crate::consent::{Person, ScopeItemKey};
use serde::Serialize;

pub const ACADEMIC_USE: &str = "secondary_use_academic";
pub const INDUSTRY_USE: &str = "secondary_use_industry";
pub const INTERNATIONAL_TRANSFER: &str = "international_transfer";

/// What the release asks of every patient's consent.
#[derive(Debug, Clone)]
pub struct UseRequest {
    /// Industry applicants need the industry item; everyone else the
    /// academic one.
    pub commercial: bool,
    /// A recipient abroad needs the international-transfer item.
    pub abroad: bool,
    /// For disease-specific research: the diseases the sample's diagnosis
    /// must fall within. Empty means no disease limit.
    pub diseases: Vec<String>,
    /// A proxy's permit for a minor counts only until the minor comes of
    /// age; from then only the patient's own consent does (policy
    /// `release.proxy_consent_lapses_at_majority`, decision 0026).
    pub proxy_consent_lapses_at_majority: bool,
}

/// Why a sample is left out. The codes are stable and machine-readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    /// No consent on record in the dataset's family.
    ConsentUnknown,
    ConsentWithdrawn,
    /// The item was permitted on an older wording that changed materially.
    NeedsReconsent,
    /// The item was permitted by a proxy while the patient was a minor, and
    /// the patient has since come of age without consenting themselves.
    ReachedMajority,
    IndustryUseNotConsented,
    AcademicUseNotConsented,
    InternationalTransferNotConsented,
    /// The diagnosis is missing or outside the research's diseases.
    OutsideDiseaseScope,
}

impl Exclusion {
    pub const ALL: [Exclusion; 8] = [
        Exclusion::ConsentUnknown,
        Exclusion::ConsentWithdrawn,
        Exclusion::NeedsReconsent,
        Exclusion::ReachedMajority,
        Exclusion::IndustryUseNotConsented,
        Exclusion::AcademicUseNotConsented,
        Exclusion::InternationalTransferNotConsented,
        Exclusion::OutsideDiseaseScope,
    ];

    /// The exclusion a stored reason code names, if any.
    pub fn parse(code: &str) -> Option<Exclusion> {
        Self::ALL.into_iter().find(|e| e.as_str() == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Exclusion::ConsentUnknown => "consent_unknown",
            Exclusion::ConsentWithdrawn => "consent_withdrawn",
            Exclusion::NeedsReconsent => "needs_reconsent",
            Exclusion::ReachedMajority => "reached_majority",
            Exclusion::IndustryUseNotConsented => "industry_use_not_consented",
            Exclusion::AcademicUseNotConsented => "academic_use_not_consented",
            Exclusion::InternationalTransferNotConsented => "international_transfer_not_consented",
            Exclusion::OutsideDiseaseScope => "outside_disease_scope",
        }
    }
}

/// The outcome for one sample: included on the items listed, or excluded
/// for the first reason found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleDecision {
    Included {
        /// The document version in force whose items were relied on.
        version: u32,
        items: Vec<&'static str>,
    },
    Excluded(Exclusion),
}

impl SampleDecision {
    /// Whether a change takes back what a release already handed out: the
    /// sample was included before it and is excluded after it. Returns why,
    /// for the recall notice. A sample that was already excluded was never
    /// handed out for this reason (or was recalled when it was excluded), and
    /// one that is still included stays with its recipients.
    pub fn taken_back_by(&self, after: &SampleDecision) -> Option<Exclusion> {
        match (self, after) {
            (SampleDecision::Included { .. }, SampleDecision::Excluded(why)) => Some(*why),
            _ => None,
        }
    }
}

impl UseRequest {
    /// The use as a handed-out sample is checked against again (resolution
    /// and recall): the disease scope was settled at release, and a
    /// diagnosis does not change, so only consent is.
    pub fn rechecked(self) -> UseRequest {
        UseRequest {
            diseases: Vec::new(),
            ..self
        }
    }

    /// Whether the use is industrial, and whether it sends data abroad.
    pub fn kind(&self) -> crate::access::UseKind {
        crate::access::UseKind {
            commercial: self.commercial,
            abroad: self.abroad,
        }
    }

    /// The consent items this use relies on.
    pub fn required_items(&self) -> Vec<&'static str> {
        let mut items = vec![if self.commercial {
            INDUSTRY_USE
        } else {
            ACADEMIC_USE
        }];
        if self.abroad {
            items.push(INTERNATIONAL_TRANSFER);
        }
        items
    }

    pub fn decide(
        &self,
        consent: &ConsentSnapshot,
        person: &Person,
        diagnosis: Option<&str>,
        diseases: &DiseaseHierarchy,
    ) -> SampleDecision {
        match consent.status {
            ConsentStatus::None => return SampleDecision::Excluded(Exclusion::ConsentUnknown),
            ConsentStatus::Withdrawn => {
                return SampleDecision::Excluded(Exclusion::ConsentWithdrawn)
            }
            ConsentStatus::Active => {}
        }
        let Some(version) = consent.version_in_force else {
            return SampleDecision::Excluded(Exclusion::ConsentUnknown);
        };
        let items = self.required_items();
        for item in &items {
            let Ok(key) = ScopeItemKey::parse(item) else {
                return SampleDecision::Excluded(Exclusion::ConsentUnknown);
            };
            let state = consent.item(&key);
            if consent.permits(&key) {
                if self.proxy_consent_lapses_at_majority
                    && state.is_some_and(|s| s.lapsed_at_majority(person, consent.as_of))
                {
                    return SampleDecision::Excluded(Exclusion::ReachedMajority);
                }
                continue;
            }
            let exclusion = match state.map(|s| &s.basis) {
                Some(ItemBasis::NeedsReconsent { .. }) => Exclusion::NeedsReconsent,
                Some(ItemBasis::Withdrawn { .. }) | Some(_) | None => match *item {
                    INDUSTRY_USE => Exclusion::IndustryUseNotConsented,
                    ACADEMIC_USE => Exclusion::AcademicUseNotConsented,
                    _ => Exclusion::InternationalTransferNotConsented,
                },
            };
            return SampleDecision::Excluded(exclusion);
        }
        if !self.diseases.is_empty()
            && !diagnosis.is_some_and(|d| diseases.within_any(d, &self.diseases))
        {
            return SampleDecision::Excluded(Exclusion::OutsideDiseaseScope);
        }
        SampleDecision::Included { version, items }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::consent::state::{Decision, ItemState};
    use chrono::DateTime;

    fn snapshot(status: ConsentStatus, permits: &[&str], denies: &[&str]) -> ConsentSnapshot {
        let state = |key: &str, decision| ItemState {
            key: ScopeItemKey::parse(key).unwrap(),
            decision,
            basis: ItemBasis::Consented {
                event_id: "e".into(),
                version: 1,
            },
            proxy_signed_at: None,
        };
        ConsentSnapshot {
            as_of: DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
            status,
            version_in_force: Some(1),
            items: permits
                .iter()
                .map(|k| state(k, Decision::Permit))
                .chain(denies.iter().map(|k| state(k, Decision::Deny)))
                .collect(),
        }
    }

    impl UseRequest {
        fn decide_for_adult(
            &self,
            consent: &ConsentSnapshot,
            diagnosis: Option<&str>,
            diseases: &DiseaseHierarchy,
        ) -> SampleDecision {
            self.decide(consent, &Person::default(), diagnosis, diseases)
        }
    }

    fn hierarchy() -> DiseaseHierarchy {
        DiseaseHierarchy::parse(super::super::duo::BUNDLED_DISEASES).unwrap()
    }

    fn request(commercial: bool, abroad: bool, diseases: &[&str]) -> UseRequest {
        UseRequest {
            commercial,
            abroad,
            diseases: diseases.iter().map(|s| s.to_string()).collect(),
            proxy_consent_lapses_at_majority: true,
        }
    }

    #[test]
    fn industry_needs_the_industry_item_and_academia_the_academic_one() {
        let h = hierarchy();
        let academic_only = snapshot(ConsentStatus::Active, &[ACADEMIC_USE], &[INDUSTRY_USE]);
        assert_eq!(
            request(true, false, &[]).decide_for_adult(&academic_only, None, &h),
            SampleDecision::Excluded(Exclusion::IndustryUseNotConsented)
        );
        assert_eq!(
            request(false, false, &[]).decide_for_adult(&academic_only, None, &h),
            SampleDecision::Included {
                version: 1,
                items: vec![ACADEMIC_USE]
            }
        );
    }

    #[test]
    fn unknown_withdrawn_abroad_and_disease_scope_exclude() {
        let h = hierarchy();
        let none = snapshot(ConsentStatus::None, &[], &[]);
        let withdrawn = snapshot(ConsentStatus::Withdrawn, &[ACADEMIC_USE], &[]);
        let domestic = snapshot(ConsentStatus::Active, &[ACADEMIC_USE], &[]);
        let r = request(false, false, &[]);
        assert_eq!(
            r.decide_for_adult(&none, None, &h),
            SampleDecision::Excluded(Exclusion::ConsentUnknown)
        );
        assert_eq!(
            r.decide_for_adult(&withdrawn, None, &h),
            SampleDecision::Excluded(Exclusion::ConsentWithdrawn)
        );
        assert_eq!(
            request(false, true, &[]).decide_for_adult(&domestic, None, &h),
            SampleDecision::Excluded(Exclusion::InternationalTransferNotConsented)
        );
        let lung = request(false, false, &["MONDO:0008903"]);
        assert_eq!(
            lung.decide_for_adult(&domestic, Some("MONDO:0007254"), &h),
            SampleDecision::Excluded(Exclusion::OutsideDiseaseScope)
        );
        assert_eq!(
            lung.decide_for_adult(&domestic, None, &h),
            SampleDecision::Excluded(Exclusion::OutsideDiseaseScope)
        );
        assert!(matches!(
            lung.decide_for_adult(&domestic, Some("MONDO:0005061"), &h),
            SampleDecision::Included { .. }
        ));
    }

    #[test]
    fn a_proxys_permit_excludes_once_the_minor_has_come_of_age() {
        let h = hierarchy();
        let mut by_parent = snapshot(ConsentStatus::Active, &[ACADEMIC_USE], &[]);
        // Signed a year before the snapshot's instant.
        by_parent.items[0].proxy_signed_at = Some(by_parent.as_of - chrono::Duration::days(365));
        let today = crate::calendar::day_of(by_parent.as_of);
        let person = |majority_in_days: i64| Person {
            majority_on: Some(today + chrono::Duration::days(majority_in_days)),
            deceased_on: None,
        };
        let r = request(false, false, &[]);
        assert!(matches!(
            r.decide(&by_parent, &person(30), None, &h),
            SampleDecision::Included { .. }
        ));
        assert_eq!(
            r.decide(&by_parent, &person(0), None, &h),
            SampleDecision::Excluded(Exclusion::ReachedMajority)
        );
        assert_eq!(
            r.decide(&by_parent, &person(-30), None, &h),
            SampleDecision::Excluded(Exclusion::ReachedMajority)
        );
        let continued = UseRequest {
            proxy_consent_lapses_at_majority: false,
            ..r
        };
        assert!(
            matches!(
                continued.decide(&by_parent, &person(-30), None, &h),
                SampleDecision::Included { .. }
            ),
            "a programme whose policy keeps a proxy's consent after majority"
        );
    }

    #[test]
    fn only_an_inclusion_turned_exclusion_is_taken_back() {
        let included = SampleDecision::Included {
            version: 1,
            items: vec![ACADEMIC_USE],
        };
        let withdrawn = SampleDecision::Excluded(Exclusion::ConsentWithdrawn);
        let no_industry = SampleDecision::Excluded(Exclusion::IndustryUseNotConsented);
        assert_eq!(
            included.taken_back_by(&withdrawn),
            Some(Exclusion::ConsentWithdrawn)
        );
        assert_eq!(included.taken_back_by(&included), None, "still permitted");
        assert_eq!(
            no_industry.taken_back_by(&withdrawn),
            None,
            "never handed out on the change's account: no second recall"
        );
        assert_eq!(
            withdrawn.taken_back_by(&included),
            None,
            "a re-grant recalls nothing"
        );
    }
}
