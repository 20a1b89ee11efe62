//! GA4GH DUO matching of a research purpose against a dataset's data-use
//! limitations.
//!
//! Semantics (as in DUOS): the primary terms form a hierarchy
//! GRU ⊃ HMB ⊃ DS(disease), and a request matches a dataset tagged with the
//! same term or an ancestor. DS compares diseases through the disease
//! hierarchy in `policies/diseases.toml`. Modifiers then restrict: NPU/NCU
//! refuse commercial applicants, GS refuses recipients abroad, NMDS refuses
//! methods development, NPOA refuses ancestry research. Modifiers that
//! need a human (US, PS, IS, COL) make the result abstain; TS, MOR, PUB and
//! RTN approve only with that condition attached by the committee.
//!
//! Unknown terms never approve: they abstain, so a person decides.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Bumped whenever a rule below changes; stored with every match and in
/// every release's provenance.
pub const MATCHER_VERSION: &str = "duo-match/v1";

/// The primary research purpose of an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code")]
pub enum ResearchPurpose {
    /// DUO:0000042 general research use.
    #[serde(rename = "GRU")]
    General,
    /// DUO:0000006 health, medical or biomedical research.
    #[serde(rename = "HMB")]
    HealthMedicalBiomedical,
    /// DUO:0000007 research on the named diseases.
    #[serde(rename = "DS")]
    DiseaseSpecific { diseases: Vec<String> },
    /// DUO:0000011 population origins or ancestry research.
    #[serde(rename = "POA")]
    PopulationAncestry,
    /// Development of methods or software (DUO's NMDS modifier forbids it).
    #[serde(rename = "MDS")]
    MethodsDevelopment,
}

impl ResearchPurpose {
    pub fn code(&self) -> &'static str {
        match self {
            ResearchPurpose::General => "GRU",
            ResearchPurpose::HealthMedicalBiomedical => "HMB",
            ResearchPurpose::DiseaseSpecific { .. } => "DS",
            ResearchPurpose::PopulationAncestry => "POA",
            ResearchPurpose::MethodsDevelopment => "MDS",
        }
    }

    /// The DUO term IRI-style identifier, for log entries and registers.
    pub fn duo_id(&self) -> &'static str {
        match self {
            ResearchPurpose::General => "DUO:0000042",
            ResearchPurpose::HealthMedicalBiomedical => "DUO:0000006",
            ResearchPurpose::DiseaseSpecific { .. } => "DUO:0000007",
            ResearchPurpose::PopulationAncestry => "DUO:0000011",
            // DUO has no permission term for methods development; NMDS
            // (DUO:0000015) is the restriction it answers to.
            ResearchPurpose::MethodsDevelopment => "DUO:0000015",
        }
    }

    /// Diseases a DS purpose is limited to; empty for every other purpose.
    pub fn diseases(&self) -> &[String] {
        match self {
            ResearchPurpose::DiseaseSpecific { diseases } => diseases,
            _ => &[],
        }
    }
}

/// The primary permission a dataset is released under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Permission {
    #[serde(rename = "GRU")]
    General,
    #[serde(rename = "HMB")]
    HealthMedicalBiomedical,
    #[serde(rename = "DS")]
    DiseaseSpecific,
}

/// A dataset's data-use limitations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataUseTerms {
    pub permission: Permission,
    /// For DS: the diseases the data may be used for.
    #[serde(default)]
    pub diseases: Vec<String>,
    /// DUO modifier abbreviations, e.g. `NCU`, `GS`, `PUB`.
    #[serde(default)]
    pub modifiers: Vec<String>,
}

/// Modifiers the matcher understands. Anything else abstains.
pub const KNOWN_MODIFIERS: [&str; 13] = [
    "NPU", "NCU", "GS", "IRB", "NMDS", "NPOA", "TS", "MOR", "PUB", "RTN", "US", "PS", "IS",
];

/// Condition kinds a committee can attach (DUO TS, MOR, PUB, RTN).
pub const CONDITION_MODIFIERS: [&str; 4] = ["TS", "MOR", "PUB", "RTN"];

/// Modifiers only a person can check (collaboration or project limits).
const HUMAN_CHECKED: [&str; 4] = ["US", "PS", "IS", "COL"];

/// A disease hierarchy: each code's parent, as in `policies/diseases.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiseaseHierarchy {
    #[serde(default)]
    pub diseases: BTreeMap<String, DiseaseNode>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiseaseNode {
    pub label: String,
    #[serde(default)]
    pub parent: Option<String>,
}

pub const BUNDLED_DISEASES: &str = include_str!("../../policies/diseases.toml");

impl DiseaseHierarchy {
    /// Parses the file and checks that every parent exists and no code is
    /// its own ancestor.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hierarchy: DiseaseHierarchy =
            toml::from_str(text).map_err(|e| format!("disease hierarchy: {e}"))?;
        for (code, node) in &hierarchy.diseases {
            if let Some(parent) = &node.parent {
                if !hierarchy.diseases.contains_key(parent) {
                    return Err(format!("disease {code}: unknown parent {parent}"));
                }
            }
            let mut seen = BTreeSet::new();
            let mut at = Some(code.as_str());
            while let Some(c) = at {
                if !seen.insert(c) {
                    return Err(format!("disease {code}: the hierarchy has a cycle"));
                }
                at = hierarchy.diseases.get(c).and_then(|n| n.parent.as_deref());
            }
        }
        Ok(hierarchy)
    }

    pub fn knows(&self, code: &str) -> bool {
        self.diseases.contains_key(code)
    }

    /// True if `code` is `ancestor` or lies below it.
    pub fn is_within(&self, code: &str, ancestor: &str) -> bool {
        let mut at = Some(code);
        // The parse check rules out cycles; the bound guards hand-built values.
        for _ in 0..=self.diseases.len() {
            match at {
                Some(c) if c == ancestor => return true,
                Some(c) => at = self.diseases.get(c).and_then(|n| n.parent.as_deref()),
                None => return false,
            }
        }
        false
    }

    /// True if `code` lies within any of `scope`.
    pub fn within_any(&self, code: &str, scope: &[String]) -> bool {
        scope.iter().any(|a| self.is_within(code, a))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Approve,
    Abstain,
    Deny,
}

/// One rule that fired, machine-readable (`code`) and human-readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub message: String,
    pub outcome: Outcome,
}

fn reason(code: &str, outcome: Outcome, message: String) -> Reason {
    Reason {
        code: code.to_owned(),
        message,
        outcome,
    }
}

/// Who is asking, as far as DUO cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applicant {
    /// From the organization's verified type, never self-declared.
    pub commercial: bool,
    /// Any recipient outside Japan.
    pub abroad: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchResult {
    pub outcome: Outcome,
    pub rationale: Vec<Reason>,
    /// Conditions (TS, MOR, PUB, RTN) an approval must carry.
    pub required_conditions: Vec<String>,
    pub matcher: String,
}

/// Matches one purpose against one dataset's terms.
pub fn match_purpose(
    purpose: &ResearchPurpose,
    applicant: Applicant,
    terms: &DataUseTerms,
    diseases: &DiseaseHierarchy,
) -> MatchResult {
    let mut rationale = vec![primary(purpose, terms, diseases)];
    let mut required_conditions = Vec::new();
    let mut modifiers: Vec<&str> = terms.modifiers.iter().map(String::as_str).collect();
    modifiers.sort_unstable();
    modifiers.dedup();
    for m in modifiers {
        let fired = match m {
            "NPU" | "NCU" if applicant.commercial => Some(reason(
                "commercial_use_excluded",
                Outcome::Deny,
                format!("the dataset is {m}: not for commercial applicants"),
            )),
            "NPU" | "NCU" => Some(reason(
                "non_commercial_applicant",
                Outcome::Approve,
                format!("the dataset is {m} and the applicant is not commercial"),
            )),
            "GS" if applicant.abroad => Some(reason(
                "geographic_restriction",
                Outcome::Deny,
                "the dataset is limited to Japan (GS) and a recipient is abroad".into(),
            )),
            "GS" => None,
            "NMDS" if *purpose == ResearchPurpose::MethodsDevelopment => Some(reason(
                "methods_development_excluded",
                Outcome::Deny,
                "the dataset forbids methods development (NMDS)".into(),
            )),
            "NPOA" if *purpose == ResearchPurpose::PopulationAncestry => Some(reason(
                "ancestry_research_excluded",
                Outcome::Deny,
                "the dataset forbids population-origins research (NPOA)".into(),
            )),
            "NMDS" | "NPOA" => None,
            // Every application names its ethics approval; the committee
            // checks the document itself.
            "IRB" => Some(reason(
                "ethics_approval_required",
                Outcome::Approve,
                "the dataset needs ethics approval (IRB); the application names one".into(),
            )),
            c if CONDITION_MODIFIERS.contains(&c) => {
                required_conditions.push(c.to_owned());
                Some(reason(
                    "condition_required",
                    Outcome::Approve,
                    format!("an approval must carry the {c} condition"),
                ))
            }
            c if HUMAN_CHECKED.contains(&c) => Some(reason(
                "committee_check_required",
                Outcome::Abstain,
                format!("{c} limits use to a collaboration, project or institution; the committee decides"),
            )),
            other => Some(reason(
                "unknown_modifier",
                Outcome::Abstain,
                format!("modifier `{other}` is not one this matcher knows"),
            )),
        };
        rationale.extend(fired);
    }
    let outcome = rationale
        .iter()
        .map(|r| r.outcome)
        .max()
        .unwrap_or(Outcome::Abstain);
    MatchResult {
        outcome,
        rationale,
        required_conditions,
        matcher: MATCHER_VERSION.to_owned(),
    }
}

fn primary(purpose: &ResearchPurpose, terms: &DataUseTerms, diseases: &DiseaseHierarchy) -> Reason {
    use Permission as P;
    use ResearchPurpose as R;
    let tagged = match terms.permission {
        P::General => "GRU",
        P::HealthMedicalBiomedical => "HMB",
        P::DiseaseSpecific => "DS",
    };
    let same_or_ancestor = |ok: bool, what: &str| {
        if ok {
            reason(
                "purpose_within_permission",
                Outcome::Approve,
                format!("{} lies within the dataset's {tagged}", what),
            )
        } else {
            reason(
                "purpose_outside_permission",
                Outcome::Deny,
                format!("{} is broader than or outside the dataset's {tagged}", what),
            )
        }
    };
    match (purpose, terms.permission) {
        (_, P::General) => same_or_ancestor(true, purpose.code()),
        (R::HealthMedicalBiomedical | R::DiseaseSpecific { .. }, P::HealthMedicalBiomedical) => {
            same_or_ancestor(true, purpose.code())
        }
        // Methods development for health research stays within HMB unless
        // the dataset says NMDS, which the modifiers check.
        (R::MethodsDevelopment, P::HealthMedicalBiomedical) => same_or_ancestor(true, "MDS"),
        (R::DiseaseSpecific { diseases: asked }, P::DiseaseSpecific) => {
            if asked.is_empty() {
                return reason(
                    "purpose_outside_permission",
                    Outcome::Deny,
                    "a DS purpose must name at least one disease".into(),
                );
            }
            if let Some(unknown) = asked
                .iter()
                .chain(terms.diseases.iter())
                .find(|d| !diseases.knows(d))
            {
                return reason(
                    "unknown_disease",
                    Outcome::Abstain,
                    format!("disease {unknown} is not in the disease hierarchy"),
                );
            }
            let all_within = asked.iter().all(|d| diseases.within_any(d, &terms.diseases));
            same_or_ancestor(all_within, &format!("DS({})", asked.join(", ")))
        }
        (R::MethodsDevelopment, P::DiseaseSpecific) => reason(
            "committee_check_required",
            Outcome::Abstain,
            "methods development on disease-specific data: the committee decides whether it serves the disease".into(),
        ),
        (R::General | R::HealthMedicalBiomedical | R::PopulationAncestry, _) => {
            same_or_ancestor(false, purpose.code())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hierarchy() -> DiseaseHierarchy {
        DiseaseHierarchy::parse(BUNDLED_DISEASES).unwrap()
    }

    fn terms(permission: Permission, diseases: &[&str], modifiers: &[&str]) -> DataUseTerms {
        DataUseTerms {
            permission,
            diseases: diseases.iter().map(|s| s.to_string()).collect(),
            modifiers: modifiers.iter().map(|s| s.to_string()).collect(),
        }
    }

    const ACADEMIC: Applicant = Applicant {
        commercial: false,
        abroad: false,
    };
    const INDUSTRY: Applicant = Applicant {
        commercial: true,
        abroad: false,
    };

    fn ds(codes: &[&str]) -> ResearchPurpose {
        ResearchPurpose::DiseaseSpecific {
            diseases: codes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_request_matches_the_same_term_or_an_ancestor() {
        let h = hierarchy();
        let hmb = terms(Permission::HealthMedicalBiomedical, &[], &[]);
        let gru = terms(Permission::General, &[], &[]);
        let breast = terms(Permission::DiseaseSpecific, &["MONDO:0007254"], &[]);
        let cancer = terms(Permission::DiseaseSpecific, &["MONDO:0004992"], &[]);
        let p = ResearchPurpose::HealthMedicalBiomedical;
        assert_eq!(
            match_purpose(&p, ACADEMIC, &hmb, &h).outcome,
            Outcome::Approve
        );
        assert_eq!(
            match_purpose(&p, ACADEMIC, &gru, &h).outcome,
            Outcome::Approve
        );
        assert_eq!(
            match_purpose(&p, ACADEMIC, &breast, &h).outcome,
            Outcome::Deny
        );
        let breast_purpose = ds(&["MONDO:0007254"]);
        assert_eq!(
            match_purpose(&breast_purpose, ACADEMIC, &cancer, &h).outcome,
            Outcome::Approve
        );
        assert_eq!(
            match_purpose(&breast_purpose, ACADEMIC, &hmb, &h).outcome,
            Outcome::Approve
        );
        // The dataset is narrower than the request: no.
        let cancer_purpose = ds(&["MONDO:0004992"]);
        assert_eq!(
            match_purpose(&cancer_purpose, ACADEMIC, &breast, &h).outcome,
            Outcome::Deny
        );
        assert_eq!(
            match_purpose(&ResearchPurpose::General, ACADEMIC, &hmb, &h).outcome,
            Outcome::Deny
        );
        assert_eq!(
            match_purpose(&ResearchPurpose::PopulationAncestry, ACADEMIC, &hmb, &h).outcome,
            Outcome::Deny
        );
    }

    #[test]
    fn modifiers_restrict_and_explain() {
        let h = hierarchy();
        let p = ResearchPurpose::HealthMedicalBiomedical;
        let ncu = terms(Permission::HealthMedicalBiomedical, &[], &["NCU"]);
        let denied = match_purpose(&p, INDUSTRY, &ncu, &h);
        assert_eq!(denied.outcome, Outcome::Deny);
        assert!(denied
            .rationale
            .iter()
            .any(|r| r.code == "commercial_use_excluded"));
        assert_eq!(
            match_purpose(&p, ACADEMIC, &ncu, &h).outcome,
            Outcome::Approve
        );

        let gs = terms(Permission::General, &[], &["GS"]);
        let abroad = Applicant {
            commercial: false,
            abroad: true,
        };
        assert_eq!(match_purpose(&p, abroad, &gs, &h).outcome, Outcome::Deny);

        let pub_rtn = terms(Permission::General, &[], &["PUB", "RTN"]);
        let with_conditions = match_purpose(&p, ACADEMIC, &pub_rtn, &h);
        assert_eq!(with_conditions.outcome, Outcome::Approve);
        assert_eq!(with_conditions.required_conditions, vec!["PUB", "RTN"]);

        let project = terms(Permission::General, &[], &["PS"]);
        assert_eq!(
            match_purpose(&p, ACADEMIC, &project, &h).outcome,
            Outcome::Abstain
        );
        let odd = terms(Permission::General, &[], &["XYZ"]);
        let abstained = match_purpose(&p, ACADEMIC, &odd, &h);
        assert_eq!(abstained.outcome, Outcome::Abstain);
        assert_eq!(abstained.matcher, MATCHER_VERSION);

        let nmds = terms(Permission::HealthMedicalBiomedical, &[], &["NMDS"]);
        let methods = ResearchPurpose::MethodsDevelopment;
        assert_eq!(
            match_purpose(&methods, ACADEMIC, &nmds, &h).outcome,
            Outcome::Deny
        );
    }

    #[test]
    fn unknown_diseases_go_to_the_committee() {
        let h = hierarchy();
        let cancer = terms(Permission::DiseaseSpecific, &["MONDO:0004992"], &[]);
        let result = match_purpose(&ds(&["MONDO:9999999"]), ACADEMIC, &cancer, &h);
        assert_eq!(result.outcome, Outcome::Abstain);
        assert_eq!(result.rationale[0].code, "unknown_disease");
    }

    #[test]
    fn a_cyclic_or_dangling_hierarchy_is_refused() {
        let cyclic = "[diseases.A]\nlabel='a'\nparent='B'\n[diseases.B]\nlabel='b'\nparent='A'\n";
        assert!(DiseaseHierarchy::parse(cyclic).is_err());
        let dangling = "[diseases.A]\nlabel='a'\nparent='Z'\n";
        assert!(DiseaseHierarchy::parse(dangling).is_err());
    }
}
