//! Request fields read without building a `serde_json::Value` per field: a [`Text`] is a JSON
//! string (borrowed from the body when it has no escapes), `null`, or anything else — kept
//! only as "not a string", so the route can name the field in its 400.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, Visitor};

/// A field that should be a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Text<'a> {
    /// A string.
    Str(Cow<'a, str>),
    /// `null`.
    Null,
    /// A number, a boolean, an array or an object.
    NotAString,
}

impl<'a> Text<'a> {
    /// The string, None for an absent or null field, Err(()) for another type.
    pub(crate) fn into_opt(field: Option<Text<'a>>) -> Result<Option<Cow<'a, str>>, ()> {
        match field {
            None | Some(Text::Null) => Ok(None),
            Some(Text::Str(s)) => Ok(Some(s)),
            Some(Text::NotAString) => Err(()),
        }
    }
}

impl<'de: 'a, 'a> de::Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text<'a>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text::Str(Cow::Owned(v)))
            }
            fn visit_unit<E>(self) -> Result<Text<'de>, E> {
                Ok(Text::Null)
            }
            fn visit_none<E>(self) -> Result<Text<'de>, E> {
                Ok(Text::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Text<'de>, E> {
                Ok(Text::NotAString)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Text<'de>, E> {
                Ok(Text::NotAString)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Text<'de>, E> {
                Ok(Text::NotAString)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Text<'de>, E> {
                Ok(Text::NotAString)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Text<'de>, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text::NotAString)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut a: A) -> Result<Text<'de>, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text::NotAString)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_null_and_the_rest() {
        fn f(s: &str) -> Text<'_> {
            serde_json::from_str(s).unwrap()
        }
        assert_eq!(f(r#""a""#), Text::Str(Cow::Borrowed("a")));
        assert_eq!(f(r#""a\nb""#), Text::Str(Cow::Owned("a\nb".into())));
        assert_eq!(f("null"), Text::Null);
        for other in ["1", "true", "[1, [2]]", r#"{"a": {"b": 1}}"#, "1.5"] {
            assert_eq!(f(other), Text::NotAString, "{other}");
        }
    }
}
