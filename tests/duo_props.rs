//! Property tests of DUO matching: the hierarchy rule holds for random
//! disease trees, modifiers only ever restrict, and commercial applicants
//! never pass a non-commercial dataset.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use genomegate::access::duo::{
    match_purpose, Applicant, DataUseTerms, DiseaseHierarchy, Outcome, Permission, ResearchPurpose,
    MATCHER_VERSION,
};
use proptest::prelude::*;

/// A random tree: node i's parent is some node before it.
fn hierarchy(parents: &[usize]) -> DiseaseHierarchy {
    let mut toml = String::from("[diseases.\"D:0\"]\nlabel = \"root\"\n");
    for (i, p) in parents.iter().enumerate() {
        let node = i + 1;
        toml.push_str(&format!(
            "[diseases.\"D:{node}\"]\nlabel = \"d{node}\"\nparent = \"D:{}\"\n",
            p % node
        ));
    }
    DiseaseHierarchy::parse(&toml).unwrap()
}

fn ancestors(h: &DiseaseHierarchy, code: &str) -> Vec<String> {
    let mut out = vec![code.to_owned()];
    let mut at = code.to_owned();
    while let Some(parent) = h.diseases.get(&at).and_then(|n| n.parent.clone()) {
        out.push(parent.clone());
        at = parent;
    }
    out
}

fn purposes() -> impl Strategy<Value = ResearchPurpose> {
    prop_oneof![
        Just(ResearchPurpose::General),
        Just(ResearchPurpose::HealthMedicalBiomedical),
        Just(ResearchPurpose::PopulationAncestry),
        Just(ResearchPurpose::MethodsDevelopment),
        (0usize..6).prop_map(|d| ResearchPurpose::DiseaseSpecific {
            diseases: vec![format!("D:{d}")]
        }),
    ]
}

fn permissions() -> impl Strategy<Value = (Permission, Vec<String>)> {
    prop_oneof![
        Just((Permission::General, vec![])),
        Just((Permission::HealthMedicalBiomedical, vec![])),
        (0usize..6).prop_map(|d| (Permission::DiseaseSpecific, vec![format!("D:{d}")])),
    ]
}

const MODIFIERS: [&str; 15] = [
    "NPU", "NCU", "GS", "IRB", "NMDS", "NPOA", "TS", "MOR", "PUB", "RTN", "US", "PS", "IS", "COL",
    "ZZZ",
];

proptest! {
    #[test]
    fn ds_matches_exactly_the_same_disease_or_an_ancestor(
        parents in proptest::collection::vec(0usize..100, 5),
        asked in 0usize..6,
        tagged in 0usize..6,
    ) {
        let h = hierarchy(&parents);
        let asked = format!("D:{asked}");
        let tagged = format!("D:{tagged}");
        let terms = DataUseTerms { permission: Permission::DiseaseSpecific, diseases: vec![tagged.clone()], modifiers: vec![] };
        let purpose = ResearchPurpose::DiseaseSpecific { diseases: vec![asked.clone()] };
        let applicant = Applicant { commercial: false, abroad: false };
        let result = match_purpose(&purpose, applicant, &terms, &h);
        let within = ancestors(&h, &asked).contains(&tagged);
        prop_assert_eq!(result.outcome, if within { Outcome::Approve } else { Outcome::Deny });
        // A disease request also fits HMB and GRU data, which are ancestors of DS.
        for permission in [Permission::HealthMedicalBiomedical, Permission::General] {
            let broader = DataUseTerms { permission, diseases: vec![], modifiers: vec![] };
            prop_assert_eq!(match_purpose(&purpose, applicant, &broader, &h).outcome, Outcome::Approve);
        }
    }

    #[test]
    fn modifiers_only_ever_restrict(
        parents in proptest::collection::vec(0usize..100, 5),
        purpose in purposes(),
        (permission, diseases) in permissions(),
        chosen in proptest::collection::vec(0usize..MODIFIERS.len(), 0..5),
        commercial in any::<bool>(),
        abroad in any::<bool>(),
    ) {
        let h = hierarchy(&parents);
        let applicant = Applicant { commercial, abroad };
        let bare = DataUseTerms { permission, diseases: diseases.clone(), modifiers: vec![] };
        let modified = DataUseTerms {
            permission,
            diseases,
            modifiers: chosen.iter().map(|i| MODIFIERS[*i].to_owned()).collect(),
        };
        let without = match_purpose(&purpose, applicant, &bare, &h);
        let with = match_purpose(&purpose, applicant, &modified, &h);
        prop_assert!(with.outcome >= without.outcome, "{:?} then {:?}", without, with);
        prop_assert!(!with.rationale.is_empty());
        prop_assert_eq!(with.matcher.as_str(), MATCHER_VERSION);
        let non_commercial = modified.modifiers.iter().any(|m| m == "NCU" || m == "NPU");
        if commercial && non_commercial {
            prop_assert_eq!(with.outcome, Outcome::Deny);
        }
        if abroad && modified.modifiers.iter().any(|m| m == "GS") {
            prop_assert_eq!(with.outcome, Outcome::Deny);
        }
    }
}
