//! Writing answers that carry stored payloads. A payload is stored as the JSON text it was
//! pushed as (docs/storage.md) and goes back out as that text, byte for byte: never parsed
//! again, so nothing the server accepted can fail to be read (however deep, whatever its
//! numbers). `serde_json` cannot embed unparsed text in a `Serialize` value, hence this small
//! writer; every other value is written by `serde_json`.

use serde::Serialize;
use uuid::Uuid;

/// A JSON object being written into a buffer.
#[derive(Debug)]
pub(crate) struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    /// Opens an object at the end of `out`.
    pub(crate) fn open(out: &'a mut Vec<u8>) -> Obj<'a> {
        out.push(b'{');
        Obj { out, first: true }
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        // Keys are the API's own names: plain ASCII, nothing to escape.
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A field written by `serde_json`.
    pub(crate) fn field<T: Serialize + ?Sized>(&mut self, k: &str, v: &T) -> &mut Obj<'a> {
        self.key(k);
        self.value(v)
    }

    fn value<T: Serialize + ?Sized>(&mut self, v: &T) -> &mut Obj<'a> {
        // Writing into a Vec cannot fail, and the API's values (strings, numbers, ids,
        // options) always serialise.
        if serde_json::to_writer(&mut *self.out, v).is_err() {
            self.out.extend_from_slice(b"null");
        }
        self
    }

    /// A string field. Most strings of an answer (ids, names, statuses) need no escape: they
    /// are copied; the others are written by `serde_json`, so the text is the same either way.
    pub(crate) fn str(&mut self, k: &str, v: &str) -> &mut Obj<'a> {
        self.key(k);
        if v.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.out.push(b'"');
            self.out.extend_from_slice(v.as_bytes());
            self.out.push(b'"');
            self
        } else {
            self.value(v)
        }
    }

    /// An id field (`null` when absent), hyphenated as `serde` writes a [`Uuid`].
    pub(crate) fn id(&mut self, k: &str, v: Option<Uuid>) -> &mut Obj<'a> {
        self.key(k);
        match v {
            Some(id) => {
                self.out.push(b'"');
                self.out.extend_from_slice(
                    id.hyphenated()
                        .encode_lower(&mut Uuid::encode_buffer())
                        .as_bytes(),
                );
                self.out.push(b'"');
            }
            None => self.out.extend_from_slice(b"null"),
        }
        self
    }

    /// A field whose value is JSON text the server stored: written as it is.
    pub(crate) fn raw(&mut self, k: &str, json: &str) -> &mut Obj<'a> {
        self.key(k);
        self.out.extend_from_slice(json.as_bytes());
        self
    }

    /// The fields of an object given as JSON text (`{...}`, as the database builds them),
    /// written into this one.
    pub(crate) fn fields_of(&mut self, object: &str) -> &mut Obj<'a> {
        let inner = object
            .trim()
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or("")
            .trim();
        if !inner.is_empty() {
            if !self.first {
                self.out.push(b',');
            }
            self.first = false;
            self.out.extend_from_slice(inner.as_bytes());
        }
        self
    }

    /// An array field whose elements `each` writes, one object per item.
    pub(crate) fn objects<T>(
        &mut self,
        k: &str,
        items: impl IntoIterator<Item = T>,
        each: impl FnMut(&mut Obj<'_>, T),
    ) -> &mut Obj<'a> {
        self.key(k);
        objects(self.out, items, each);
        self
    }

    /// Closes the object.
    pub(crate) fn close(self) {
        self.out.push(b'}');
    }
}

/// An array of objects, written at the end of `out`: one object per item, by `each`.
pub(crate) fn objects<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    mut each: impl FnMut(&mut Obj<'_>, T),
) {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let mut o = Obj::open(out);
        each(&mut o, item);
        o.close();
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_fields_raw_payloads_and_nested_objects() {
        let mut out = Vec::new();
        let mut o = Obj::open(&mut out);
        o.field("a", "x\"y")
            .raw("data", " [1,  {\"deep\": [[[]]]}, 1e400] ")
            .fields_of(r#"{"b": 1, "c": null}"#)
            .fields_of("{}")
            .objects("list", [1, 2], |o, n| {
                o.field("n", &n);
            });
        o.close();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":"x\"y","data": [1,  {"deep": [[[]]]}, 1e400] ,"b": 1, "c": null,"list":[{"n":1},{"n":2}]}"#
        );
    }

    #[test]
    fn strings_and_ids_are_written_as_serde_writes_them() {
        let strings = [
            "",
            "plain.name-1",
            "q\"uote",
            "back\\slash",
            "tab\tnew\nline",
            "\u{1}\u{1f}\u{7f}",
            "é€😀",
        ];
        let id = Uuid::now_v7();
        for s in strings {
            let mut out = Vec::new();
            let mut o = Obj::open(&mut out);
            o.str("s", s).id("id", Some(id)).id("none", None);
            o.close();
            let expected = format!(
                r#"{{"s":{},"id":{},"none":null}}"#,
                serde_json::to_string(s).unwrap(),
                serde_json::to_string(&id).unwrap()
            );
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }
}
