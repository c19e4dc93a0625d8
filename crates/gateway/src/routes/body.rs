//! Reading the admin API's JSON bodies the way the OpenAPI document describes them.

use std::marker::PhantomData;

use actix_web::http::header;
use actix_web::{mime, HttpRequest};
use serde::de::{DeserializeOwned, Error as _, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};

use crate::error::ApiError;

/// For `#[serde(deserialize_with)]` on an integer field: JSON Schema (and so the document's
/// `type: integer`) counts `6621.0` as the integer 6621, so the body may write an integer with
/// a zero fraction; serde's integers alone refuse it.
pub fn integer<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    Whole::<T>::deserialize(deserializer).map(|whole| whole.0)
}

/// [`integer`] for an optional field (with `#[serde(default)]`); `null` is `None`.
pub fn optional_integer<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    Option::<Whole<T>>::deserialize(deserializer).map(|whole| whole.map(|w| w.0))
}

/// A non-negative integer written as one (`7`) or as a number with a zero fraction (`7.0`,
/// `7e0`), within `T`.
struct Whole<T>(T);

impl<'de, T: TryFrom<u64>> Deserialize<'de> for Whole<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WholeVisitor(PhantomData))
    }
}

struct WholeVisitor<T>(PhantomData<T>);

/// 2^64: every f64 below it that has no fraction is a `u64`.
const TWO_TO_THE_64: f64 = 18_446_744_073_709_551_616.0;

impl<T: TryFrom<u64>> Visitor<'_> for WholeVisitor<T> {
    type Value = Whole<T>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a non-negative integer within the documented range")
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
        T::try_from(value)
            .map(Whole)
            .map_err(|_| E::invalid_value(Unexpected::Unsigned(value), &self))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
        u64::try_from(value)
            .map_err(|_| E::invalid_value(Unexpected::Signed(value), &self))
            .and_then(|value| self.visit_u64(value))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Self::Value, E> {
        if value.fract() == 0.0 && (0.0..TWO_TO_THE_64).contains(&value) {
            // Exact: the value is a whole number below 2^64.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            self.visit_u64(value as u64)
        } else {
            Err(E::invalid_value(Unexpected::Float(value), &self))
        }
    }
}

/// A JSON object holding a `T`. serde's derived structs also read an array of their fields
/// in order (`[5]` as `{"add": 5}`); the document promises objects, so only objects are read.
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = serde_json::Map::deserialize(deserializer)?;
        T::deserialize(serde_json::Value::Object(fields))
            .map(Object)
            .map_err(D::Error::custom)
    }
}

/// [`Object`] for an optional field (with `#[serde(default)]`); `null` is `None`.
pub fn optional_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    Option::<Object<T>>::deserialize(deserializer).map(|object| object.map(|o| o.0))
}

/// An optional JSON body: none, an empty or blank one, or `null` is `None`; anything else must
/// be sent as `application/json` (else 415) and hold a `T` (else 400). The size limit is the
/// `PayloadConfig`'s (413).
pub fn optional_json<T: DeserializeOwned>(
    request: &HttpRequest,
    body: &[u8],
) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .and_then(|t| t.parse::<mime::Mime>().ok())
        .is_some_and(|t| t.subtype() == mime::JSON || t.suffix() == Some(mime::JSON));
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    serde_json::from_slice::<Option<Object<T>>>(body)
        .map(|object| object.map(|o| o.0))
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(deserialize_with = "integer")]
        count: u32,
        #[serde(default, deserialize_with = "optional_integer")]
        grace: Option<u64>,
    }

    fn parse(json: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn integers_may_be_written_with_a_zero_fraction() {
        let body = parse(r#"{"count": 6621.0, "grace": 1e3}"#).unwrap();
        assert_eq!((body.count, body.grace), (6621, Some(1000)));
        let body = parse(r#"{"count": 7, "grace": null}"#).unwrap();
        assert_eq!((body.count, body.grace), (7, None));
        assert_eq!(parse(r#"{"count": 0}"#).unwrap().grace, None);
        let big = parse(r#"{"count": 1, "grace": 1099511627776.0}"#).unwrap();
        assert_eq!(big.grace, Some(1_099_511_627_776));
    }

    #[test]
    fn objects_are_never_read_from_arrays() {
        #[derive(Debug, Deserialize)]
        struct Outer {
            #[serde(default, deserialize_with = "optional_object")]
            inner: Option<Body>,
        }
        let read = |json: &str| serde_json::from_str::<Object<Outer>>(json).map(|o| o.0);
        assert!(read(r#"{"inner": {"count": 1}}"#).unwrap().inner.is_some());
        assert!(read(r#"{"inner": null}"#).unwrap().inner.is_none());
        assert!(read(r#"{}"#).unwrap().inner.is_none());
        for json in [r#"[null]"#, r#"{"inner": [1]}"#, r#"[]"#] {
            assert!(read(json).is_err(), "{json}");
        }
        assert!(
            serde_json::from_str::<Body>("[1]").is_ok(),
            "serde alone reads arrays"
        );
    }

    #[test]
    fn fractions_negatives_and_overflows_are_refused() {
        for json in [
            r#"{"count": 1.5}"#,
            r#"{"count": -1}"#,
            r#"{"count": -1.0}"#,
            r#"{"count": 4294967296}"#,
            r#"{"count": 4294967296.0}"#,
            r#"{"count": "7"}"#,
            r#"{"count": 1, "grace": 18446744073709551616.0}"#,
            r#"{"count": 1, "grace": 1e400}"#,
        ] {
            assert!(parse(json).is_err(), "{json}");
        }
    }
}
