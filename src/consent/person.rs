//! What is known of the person, besides their consent events, that bears on
//! what a consent allows: whether a proxy (代諾者) who signed for them while
//! they were a minor still speaks for them.
//!
//! A consent a proxy gave for a minor lapses, for research use, once the
//! minor comes of age: from then only the person's own consent counts
//! (decision 0026). A proxy who signs for an adult (a guardian of someone
//! who cannot consent) is not affected.

use chrono::NaiveDate;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Person {
    /// The day the person comes of age, recorded by their hospital for a
    /// minor. `None`: an adult, or a minor nobody recorded as one.
    pub majority_on: Option<NaiveDate>,
    pub deceased_on: Option<NaiveDate>,
}

impl Person {
    /// Whether the person was still a minor on `day`.
    pub fn minor_on(&self, day: NaiveDate) -> bool {
        self.majority_on.is_some_and(|m| day < m)
    }

    /// Whether the person had come of age, alive, by `day`. Someone who died
    /// a minor never comes of age: their proxy's consent stands.
    pub fn of_age_on(&self, day: NaiveDate) -> bool {
        self.majority_on
            .is_some_and(|m| m <= day && self.deceased_on.is_none_or(|d| m <= d))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_minor_comes_of_age_on_their_majority_day() {
        let p = Person {
            majority_on: Some(day("2030-04-01")),
            deceased_on: None,
        };
        assert!(p.minor_on(day("2030-03-31")));
        assert!(!p.of_age_on(day("2030-03-31")));
        assert!(!p.minor_on(day("2030-04-01")));
        assert!(p.of_age_on(day("2030-04-01")));
    }

    #[test]
    fn an_adult_or_unrecorded_person_is_neither() {
        let p = Person::default();
        assert!(!p.minor_on(day("2000-01-01")));
        assert!(!p.of_age_on(day("2100-01-01")));
    }

    #[test]
    fn someone_who_died_a_minor_never_comes_of_age() {
        let died_young = Person {
            majority_on: Some(day("2030-04-01")),
            deceased_on: Some(day("2025-06-01")),
        };
        assert!(!died_young.of_age_on(day("2040-01-01")));
        let died_adult = Person {
            majority_on: Some(day("2030-04-01")),
            deceased_on: Some(day("2035-06-01")),
        };
        assert!(died_adult.of_age_on(day("2040-01-01")));
    }
}
