//! Whole numbers as JSON writes them: `12` and `12.0` alike. JSON has one
//! number type, and JSON Schema calls `12.0` an integer, so a request field
//! described as one takes both; `12.5` is refused.

use serde::de::{Deserializer, Error};
use serde::Deserialize;

/// A whole number within `T`'s range, from an integer or a float whose
/// fraction is zero.
fn whole<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i128, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Integer(i64),
        Unsigned(u64),
        Float(f64),
    }
    match Number::deserialize(deserializer)? {
        Number::Integer(i) => Ok(i.into()),
        Number::Unsigned(u) => Ok(u.into()),
        // `i64::MAX as f64` is 2^63, itself out of range.
        Number::Float(f) if f.fract() == 0.0 && f.abs() < i64::MAX as f64 => Ok(f as i128),
        Number::Float(f) => Err(D::Error::custom(format!("{f} is not a whole number"))),
    }
}

fn within<'de, D: Deserializer<'de>, T: TryFrom<i128>>(value: i128) -> Result<T, D::Error> {
    T::try_from(value).map_err(|_| D::Error::custom(format!("{value} is out of range")))
}

/// For `#[serde(deserialize_with = "crate::integral::number")]`.
pub fn number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    within::<D, T>(whole(deserializer)?)
}

/// For an optional field: `#[serde(default, deserialize_with =
/// "crate::integral::optional")]`.
pub fn optional<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    #[derive(Deserialize)]
    struct Whole(#[serde(deserialize_with = "whole")] i128);
    match Option::<Whole>::deserialize(deserializer)? {
        Some(Whole(value)) => within::<D, T>(value).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Debug)]
    struct Sized {
        #[serde(deserialize_with = "super::number")]
        size: i64,
        #[serde(default, deserialize_with = "super::optional")]
        months: Option<u32>,
    }

    #[test]
    fn whole_floats_are_integers_and_fractions_are_not() {
        let read = |json: &str| serde_json::from_str::<Sized>(json);
        assert_eq!(read(r#"{"size": 12.0}"#).unwrap().size, 12);
        assert_eq!(read(r#"{"size": -3}"#).unwrap().size, -3);
        assert_eq!(
            read(r#"{"size": 1, "months": 6.0}"#).unwrap().months,
            Some(6)
        );
        assert_eq!(read(r#"{"size": 1, "months": null}"#).unwrap().months, None);
        assert_eq!(read(r#"{"size": 1}"#).unwrap().months, None);
        assert!(read(r#"{"size": 12.5}"#).is_err());
        assert!(read(r#"{"size": 1, "months": -1}"#).is_err());
        assert!(read(r#"{"size": 1e300}"#).is_err());
        assert!(read(r#"{"size": "12"}"#).is_err());
    }
}
