//! One decoder from a request's merged parameters (query string, form or JSON body, every
//! value as text) into a call's typed parameters.
//!
//! The rules are the ones the Baidu SDKs rely on: a blank value counts as absent; a number is
//! read from its text (surrounding spaces allowed); a missing required field, a number that is
//! not one, and a value its type refuses are three different failures, so each face can answer
//! each with its own code. Text is passed on as sent, untrimmed: checking it is the caller's
//! business.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::forward_to_deserialize_any;

/// Why the parameters do not make the call's request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("{0} is required")]
    Missing(String),
    #[error("{field} must be an integer, got {value:?}")]
    NotInteger { field: String, value: String },
    #[error("{field} {why}")]
    Invalid { field: String, why: String },
    /// Raised by a type outside any field (the request itself); rare.
    #[error("{0}")]
    Other(String),
}

impl de::Error for FieldError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        FieldError::Other(msg.to_string())
    }

    fn missing_field(field: &'static str) -> Self {
        FieldError::Missing(field.to_string())
    }
}

/// Decodes `T` from the parameters.
pub fn decode<T: DeserializeOwned>(params: &HashMap<String, String>) -> Result<T, FieldError> {
    T::deserialize(Fields(params))
}

struct Fields<'a>(&'a HashMap<String, String>);

impl<'de, 'a> de::Deserializer<'de> for Fields<'a> {
    type Error = FieldError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        let present = self
            .0
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()));
        visitor.visit_map(Entries {
            rest: present.collect::<Vec<_>>().into_iter(),
            value: None,
        })
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct Entries<'a> {
    rest: std::vec::IntoIter<(&'a str, &'a str)>,
    value: Option<(&'a str, &'a str)>,
}

impl<'de, 'a> MapAccess<'de> for Entries<'a> {
    type Error = FieldError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, FieldError> {
        let Some((key, value)) = self.rest.next() else {
            return Ok(None);
        };
        self.value = Some((key, value));
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, FieldError> {
        let (field, value) = self
            .value
            .take()
            .ok_or_else(|| FieldError::Other("a value without its name".into()))?;
        // A failure inside a value is that field's failure, whatever raised it.
        seed.deserialize(Value { field, value })
            .map_err(|e| match e {
                FieldError::Other(why) => FieldError::Invalid {
                    field: field.to_string(),
                    why,
                },
                other => other,
            })
    }
}

/// One parameter's text.
struct Value<'a> {
    field: &'a str,
    value: &'a str,
}

impl Value<'_> {
    fn integer(&self) -> Result<i128, FieldError> {
        self.value
            .trim()
            .parse::<i128>()
            .ok()
            .filter(|n| i64::try_from(*n).is_ok() || u64::try_from(*n).is_ok())
            .ok_or_else(|| FieldError::NotInteger {
                field: self.field.to_string(),
                value: self.value.to_string(),
            })
    }
}

macro_rules! integers {
    ($($method:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
            let n = self.integer()?;
            // The visitor checks the range of the field's own type.
            match i64::try_from(n) {
                Ok(n) => visitor.visit_i64(n),
                Err(_) => visitor.visit_u64(n as u64),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Value<'_> {
    type Error = FieldError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        visitor.visit_str(self.value)
    }

    integers!(
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64
    );

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        match self.value.trim() {
            "1" | "true" => visitor.visit_bool(true),
            "0" | "false" => visitor.visit_bool(false),
            other => Err(FieldError::Invalid {
                field: self.field.to_string(),
                why: format!("must be 1, 0, true or false, got {other:?}"),
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        // Blank values never get here: they are absent.
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        visitor.visit_enum(self.value.trim().into_deserializer())
    }

    forward_to_deserialize_any! {
        i128 u128 f32 f64 char str string bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smartpkg_types::{GetDetailRequest, PageRequest, UploadRequest, WireStatus};

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_complete_upload_decodes_with_numbers_read_from_text_and_text_untouched() {
        let r: UploadRequest = decode(&map(&[
            ("template_id", " 42 "),
            ("ext_json", "{\"a\":1}"),
            ("user_version", " 1.0.0"),
            ("user_desc", "line\nline"),
            ("access_token", "ignored"),
        ]))
        .expect("decodes");
        assert_eq!(r.template_id, 42);
        assert_eq!(r.user_version, " 1.0.0");
        assert_eq!(r.test_account, None);
    }

    #[test]
    fn missing_blank_and_malformed_fields_are_told_apart_by_name() {
        let e = decode::<UploadRequest>(&map(&[("template_id", "1"), ("ext_json", "  ")]))
            .expect_err("incomplete");
        assert_eq!(e, FieldError::Missing("ext_json".into()));
        let e = decode::<UploadRequest>(&map(&[
            ("template_id", "12a"),
            ("ext_json", "{}"),
            ("user_version", "1"),
            ("user_desc", "d"),
        ]))
        .expect_err("not a number");
        assert_eq!(
            e,
            FieldError::NotInteger {
                field: "template_id".into(),
                value: "12a".into()
            }
        );
        assert_eq!(e.to_string(), "template_id must be an integer, got \"12a\"");
    }

    #[test]
    fn a_value_its_type_refuses_names_the_field() {
        let e = decode::<GetDetailRequest>(&map(&[("type", "2")])).expect_err("unknown status");
        let FieldError::Invalid { field, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(field, "type");
        let ok: GetDetailRequest = decode(&map(&[("type", "6"), ("package_id", "")])).expect("ok");
        assert_eq!(ok.status, Some(WireStatus::AuditPassed));
        assert_eq!(ok.package_id, None);
    }

    #[test]
    fn out_of_range_numbers_are_refused_not_wrapped() {
        let e = decode::<UploadRequest>(&map(&[
            ("template_id", "99999999999999999999999"),
            ("ext_json", "{}"),
            ("user_version", "1"),
            ("user_desc", "d"),
        ]))
        .expect_err("too large");
        assert!(matches!(e, FieldError::NotInteger { .. }), "{e:?}");
    }

    #[test]
    fn defaults_fill_what_the_call_leaves_out() {
        let p: PageRequest = decode(&map(&[("page", "3")])).expect("decodes");
        assert_eq!((p.page, p.page_size), (3, 10));
    }
}
