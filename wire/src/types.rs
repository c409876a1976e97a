//! Binary encoding of the parameter and column types the server uses.
//!
//! Supported: `bool`, `int2`, `int4`, `int8`, `float8`, `text` (and `varchar`/`name` on decode),
//! `bytea`, `uuid`, `timestamptz`, `jsonb`, one-dimensional arrays of each, and `NULL` through
//! `Option`. Everything travels in binary format; the element OIDs are checked on decode so a
//! mismatch between a statement and the Rust type is an error, never a misread.

use bytes::{BufMut, BytesMut};
use postgres_protocol::types as pt;
use postgres_protocol::{IsNull, Oid};

use crate::error::BoxError;

/// Type OIDs used by this client.
#[allow(missing_docs)]
pub mod oid {
    use postgres_protocol::Oid;
    pub const BOOL: Oid = 16;
    pub const BYTEA: Oid = 17;
    pub const NAME: Oid = 19;
    pub const INT8: Oid = 20;
    pub const INT2: Oid = 21;
    pub const INT4: Oid = 23;
    pub const TEXT: Oid = 25;
    pub const OID: Oid = 26;
    pub const FLOAT8: Oid = 701;
    pub const VARCHAR: Oid = 1043;
    pub const TIMESTAMPTZ: Oid = 1184;
    pub const UUID: Oid = 2950;
    pub const JSONB: Oid = 3802;
    pub const JSON: Oid = 114;
    pub const UNKNOWN: Oid = 705;
    pub const VOID: Oid = 2278;
    pub const BOOL_ARRAY: Oid = 1000;
    pub const BYTEA_ARRAY: Oid = 1001;
    pub const INT2_ARRAY: Oid = 1005;
    pub const INT4_ARRAY: Oid = 1007;
    pub const TEXT_ARRAY: Oid = 1009;
    pub const VARCHAR_ARRAY: Oid = 1015;
    pub const INT8_ARRAY: Oid = 1016;
    pub const FLOAT8_ARRAY: Oid = 1022;
    pub const TIMESTAMPTZ_ARRAY: Oid = 1185;
    pub const UUID_ARRAY: Oid = 2951;
    pub const JSONB_ARRAY: Oid = 3807;
}

/// A Rust type with a fixed PostgreSQL type.
pub trait SqlType {
    /// OID of the scalar type.
    const OID: Oid;
    /// OID of its one-dimensional array type.
    const ARRAY_OID: Oid;
    /// Whether a column of type `oid` can be decoded as this type.
    fn accepts(oid: Oid) -> bool {
        oid == Self::OID
    }
}

/// A value that can be sent as a binary parameter.
pub trait ToSql: Sync {
    /// The parameter's type OID (used when the statement is parsed without declared types, and to
    /// check the value against a prepared statement's parameter).
    fn sql_oid(&self) -> Oid;
    /// Writes the value (without its length prefix). Returns [`IsNull::Yes`] for `NULL`.
    fn to_sql(&self, buf: &mut BytesMut) -> Result<IsNull, BoxError>;
}

/// A value that can be read from a binary column.
pub trait FromSql<'a>: Sized {
    /// Whether a column of type `oid` can be decoded as `Self`.
    fn accepts(oid: Oid) -> bool;
    /// Decodes a non-`NULL` value.
    fn from_sql(oid: Oid, raw: &'a [u8]) -> Result<Self, BoxError>;
    /// Decodes `NULL`; an error unless `Self` is an `Option`.
    fn from_sql_null(_oid: Oid) -> Result<Self, BoxError> {
        Err("unexpected NULL".into())
    }
}

/// `timestamptz`: microseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

impl Timestamp {
    /// The current time.
    pub fn now() -> Timestamp {
        Timestamp::from(std::time::SystemTime::now())
    }
    /// Microseconds since the Unix epoch.
    pub fn micros(self) -> i64 {
        self.0
    }
}

impl From<std::time::SystemTime> for Timestamp {
    fn from(t: std::time::SystemTime) -> Timestamp {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX)),
        }
    }
}

/// `jsonb` text. Encodes `T: AsRef<str>` (the caller guarantees it is valid JSON; the server
/// checks it again); decodes into `Json<String>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json<T>(pub T);

macro_rules! scalar {
    ($t:ty, $oid:expr, $arr:expr, |$v:ident, $buf:ident| $enc:expr, |$raw:ident| $dec:expr) => {
        impl SqlType for $t {
            const OID: Oid = $oid;
            const ARRAY_OID: Oid = $arr;
        }
        impl ToSql for $t {
            fn sql_oid(&self) -> Oid {
                $oid
            }
            fn to_sql(&self, $buf: &mut BytesMut) -> Result<IsNull, BoxError> {
                let $v = self;
                $enc;
                Ok(IsNull::No)
            }
        }
        impl<'a> FromSql<'a> for $t {
            fn accepts(oid: Oid) -> bool {
                <$t as SqlType>::accepts(oid)
            }
            fn from_sql(_oid: Oid, $raw: &'a [u8]) -> Result<Self, BoxError> {
                $dec
            }
        }
    };
}

scalar!(
    bool,
    oid::BOOL,
    oid::BOOL_ARRAY,
    |v, b| pt::bool_to_sql(*v, b),
    |r| pt::bool_from_sql(r)
);
scalar!(
    i16,
    oid::INT2,
    oid::INT2_ARRAY,
    |v, b| pt::int2_to_sql(*v, b),
    |r| pt::int2_from_sql(r)
);
scalar!(
    i32,
    oid::INT4,
    oid::INT4_ARRAY,
    |v, b| pt::int4_to_sql(*v, b),
    |r| pt::int4_from_sql(r)
);
scalar!(
    i64,
    oid::INT8,
    oid::INT8_ARRAY,
    |v, b| pt::int8_to_sql(*v, b),
    |r| pt::int8_from_sql(r)
);
scalar!(
    f64,
    oid::FLOAT8,
    oid::FLOAT8_ARRAY,
    |v, b| pt::float8_to_sql(*v, b),
    |r| pt::float8_from_sql(r)
);
scalar!(
    uuid::Uuid,
    oid::UUID,
    oid::UUID_ARRAY,
    |v, b| pt::uuid_to_sql(*v.as_bytes(), b),
    |r| Ok(uuid::Uuid::from_bytes(pt::uuid_from_sql(r)?))
);
scalar!(
    Timestamp,
    oid::TIMESTAMPTZ,
    oid::TIMESTAMPTZ_ARRAY,
    |v, b| pt::timestamp_to_sql(v.0 - PG_EPOCH_OFFSET_US, b),
    |r| Ok(Timestamp(
        pt::timestamp_from_sql(r)?.saturating_add(PG_EPOCH_OFFSET_US)
    ))
);

fn is_text(oid: Oid) -> bool {
    matches!(
        oid,
        oid::TEXT | oid::VARCHAR | oid::NAME | oid::UNKNOWN | oid::JSON
    )
}

impl SqlType for String {
    const OID: Oid = oid::TEXT;
    const ARRAY_OID: Oid = oid::TEXT_ARRAY;
    fn accepts(oid: Oid) -> bool {
        is_text(oid)
    }
}
impl SqlType for &str {
    const OID: Oid = oid::TEXT;
    const ARRAY_OID: Oid = oid::TEXT_ARRAY;
}
impl ToSql for str {
    fn sql_oid(&self) -> Oid {
        oid::TEXT
    }
    fn to_sql(&self, buf: &mut BytesMut) -> Result<IsNull, BoxError> {
        pt::text_to_sql(self, buf);
        Ok(IsNull::No)
    }
}
impl ToSql for String {
    fn sql_oid(&self) -> Oid {
        oid::TEXT
    }
    fn to_sql(&self, buf: &mut BytesMut) -> Result<IsNull, BoxError> {
        self.as_str().to_sql(buf)
    }
}
impl SqlType for std::sync::Arc<str> {
    const OID: Oid = oid::TEXT;
    const ARRAY_OID: Oid = oid::TEXT_ARRAY;
}
impl ToSql for std::sync::Arc<str> {
    fn sql_oid(&self) -> Oid {
        oid::TEXT
    }
    fn to_sql(&self, buf: &mut BytesMut) -> Result<IsNull, BoxError> {
        (**self).to_sql(buf)
    }
}
impl<'a> FromSql<'a> for &'a str {
    fn accepts(oid: Oid) -> bool {
        is_text(oid)
    }
    fn from_sql(_oid: Oid, raw: &'a [u8]) -> Result<Self, BoxError> {
        pt::text_from_sql(raw)
    }
}
impl<'a> FromSql<'a> for String {
    fn accepts(oid: Oid) -> bool {
        is_text(oid)
    }
    fn from_sql(_oid: Oid, raw: &'a [u8]) -> Result<Self, BoxError> {
        pt::text_from_sql(raw).map(str::to_owned)
    }
}

impl SqlType for Vec<u8> {
    const OID: Oid = oid::BYTEA;
    const ARRAY_OID: Oid = oid::BYTEA_ARRAY;
}
impl ToSql for [u8] {
    fn sql_oid(&self) -> Oid {
        oid::BYTEA
    }
    fn to_sql(&self, buf: &mut BytesMut) -> Result<IsNull, BoxError> {
        pt::bytea_to_sql(self, buf);
        Ok(IsNull::No)
    }
}
impl ToSql for Vec<u8> {
    fn sql_oid(&self) -> Oid {
        oid::BYTEA
    }
    fn to_sql(&self, buf: &mut BytesMut) -> Result<IsNull, BoxError> {
        self.as_slice().to_sql(buf)
    }
}
impl<'a> FromSql<'a> for &'a [u8] {
    fn accepts(oid: Oid) -> bool {
        oid == oid::BYTEA
    }
    fn from_sql(_oid: Oid, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(pt::bytea_from_sql(raw))
    }
}
impl<'a> FromSql<'a> for Vec<u8> {
    fn accepts(oid: Oid) -> bool {
        oid == oid::BYTEA
    }
    fn from_sql(_oid: Oid, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(pt::bytea_from_sql(raw).to_vec())
    }
}

/// jsonb's binary format: a version byte (1) followed by the JSON text.
const JSONB_VERSION: u8 = 1;

impl<T: AsRef<str>> SqlType for Json<T> {
    const OID: Oid = oid::JSONB;
    const ARRAY_OID: Oid = oid::JSONB_ARRAY;
}
impl<T: AsRef<str> + Sync> ToSql for Json<T> {
    fn sql_oid(&self) -> Oid {
        oid::JSONB
    }
    fn to_sql(&self, buf: &mut BytesMut) -> Result<IsNull, BoxError> {
        buf.put_u8(JSONB_VERSION);
        buf.put_slice(self.0.as_ref().as_bytes());
        Ok(IsNull::No)
    }
}
impl<'a> FromSql<'a> for Json<&'a str> {
    fn accepts(oid: Oid) -> bool {
        matches!(oid, oid::JSONB | oid::JSON)
    }
    fn from_sql(oid: Oid, raw: &'a [u8]) -> Result<Self, BoxError> {
        let text = if oid == oid::JSONB {
            match raw.split_first() {
                Some((&JSONB_VERSION, rest)) => rest,
                _ => return Err("unsupported jsonb version".into()),
            }
        } else {
            raw
        };
        Ok(Json(std::str::from_utf8(text)?))
    }
}
impl<'a> FromSql<'a> for Json<String> {
    fn accepts(oid: Oid) -> bool {
        <Json<&str> as FromSql<'_>>::accepts(oid)
    }
    fn from_sql(oid: Oid, raw: &'a [u8]) -> Result<Self, BoxError> {
        Json::<&str>::from_sql(oid, raw).map(|j| Json(j.0.to_owned()))
    }
}

impl<T: SqlType> SqlType for Option<T> {
    const OID: Oid = T::OID;
    const ARRAY_OID: Oid = T::ARRAY_OID;
}

impl<T: ToSql> ToSql for Option<T>
where
    T: SqlType,
{
    fn sql_oid(&self) -> Oid {
        T::OID
    }
    fn to_sql(&self, buf: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Some(v) => v.to_sql(buf),
            None => Ok(IsNull::Yes),
        }
    }
}
impl<'a, T: FromSql<'a>> FromSql<'a> for Option<T> {
    fn accepts(oid: Oid) -> bool {
        T::accepts(oid)
    }
    fn from_sql(oid: Oid, raw: &'a [u8]) -> Result<Self, BoxError> {
        T::from_sql(oid, raw).map(Some)
    }
    fn from_sql_null(_oid: Oid) -> Result<Self, BoxError> {
        Ok(None)
    }
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn sql_oid(&self) -> Oid {
        (**self).sql_oid()
    }
    fn to_sql(&self, buf: &mut BytesMut) -> Result<IsNull, BoxError> {
        (**self).to_sql(buf)
    }
}

/// Writes a one-dimensional array.
fn array_to_sql<T: ToSql + SqlType>(items: &[T], buf: &mut BytesMut) -> Result<IsNull, BoxError> {
    let len = i32::try_from(items.len()).map_err(|_| "array too long")?;
    pt::array_to_sql(
        Some(pt::ArrayDimension {
            len,
            lower_bound: 1,
        }),
        T::OID,
        items.iter(),
        |v, b| v.to_sql(b),
        buf,
    )?;
    Ok(IsNull::No)
}

impl<T: ToSql + SqlType> ToSql for [T] {
    fn sql_oid(&self) -> Oid {
        T::ARRAY_OID
    }
    fn to_sql(&self, buf: &mut BytesMut) -> Result<IsNull, BoxError> {
        array_to_sql(self, buf)
    }
}
impl<T: ToSql + SqlType> ToSql for Vec<T> {
    fn sql_oid(&self) -> Oid {
        T::ARRAY_OID
    }
    fn to_sql(&self, buf: &mut BytesMut) -> Result<IsNull, BoxError> {
        array_to_sql(self, buf)
    }
}

impl<'a, T: FromSql<'a> + ArrayElement> FromSql<'a> for Vec<T> {
    fn accepts(oid: Oid) -> bool {
        T::accepts_array(oid)
    }
    fn from_sql(_oid: Oid, raw: &'a [u8]) -> Result<Self, BoxError> {
        use fallible_iterator::FallibleIterator;
        let array = pt::array_from_sql(raw)?;
        if array.dimensions().count()? > 1 {
            return Err("multi-dimensional arrays are not supported".into());
        }
        let elem = array.element_type();
        if !T::accepts(elem) {
            return Err(format!("array element type {elem} does not fit").into());
        }
        array
            .values()
            .map(|v| match v {
                Some(raw) => T::from_sql(elem, raw),
                None => T::from_sql_null(elem),
            })
            .collect()
    }
}

/// Types that may be decoded as array elements (their array OID is known).
pub trait ArrayElement {
    /// Whether an array column of type `oid` holds elements of this type.
    fn accepts_array(oid: Oid) -> bool;
}
macro_rules! array_element {
    ($($t:ty => [$($oid:path),+]),* $(,)?) => {$(
        impl ArrayElement for $t {
            fn accepts_array(oid: Oid) -> bool { matches!(oid, $($oid)|+) }
        }
    )*};
}
array_element!(
    bool => [oid::BOOL_ARRAY],
    i16 => [oid::INT2_ARRAY],
    i32 => [oid::INT4_ARRAY],
    i64 => [oid::INT8_ARRAY],
    f64 => [oid::FLOAT8_ARRAY],
    String => [oid::TEXT_ARRAY, oid::VARCHAR_ARRAY],
    Vec<u8> => [oid::BYTEA_ARRAY],
    uuid::Uuid => [oid::UUID_ARRAY],
    Timestamp => [oid::TIMESTAMPTZ_ARRAY],
    Json<String> => [oid::JSONB_ARRAY],
);
impl<T: ArrayElement> ArrayElement for Option<T> {
    fn accepts_array(oid: Oid) -> bool {
        T::accepts_array(oid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T>(v: T) -> T
    where
        T: ToSql + for<'a> FromSql<'a>,
    {
        let mut buf = BytesMut::new();
        let oid = v.sql_oid();
        match v.to_sql(&mut buf).unwrap() {
            IsNull::Yes => T::from_sql_null(oid).unwrap(),
            IsNull::No => T::from_sql(oid, &buf).unwrap(),
        }
    }

    #[test]
    fn scalars_roundtrip() {
        assert!(roundtrip(true));
        assert_eq!(roundtrip(-7i16), -7);
        assert_eq!(roundtrip(i32::MIN), i32::MIN);
        assert_eq!(roundtrip(i64::MAX), i64::MAX);
        assert_eq!(roundtrip(1.5f64), 1.5);
        assert_eq!(roundtrip("héllo".to_string()), "héllo");
        assert_eq!(roundtrip(vec![0u8, 255]), vec![0u8, 255]);
        let u = uuid::Uuid::now_v7();
        assert_eq!(roundtrip(u), u);
        assert_eq!(
            roundtrip(Timestamp(1_700_000_000_123_456)),
            Timestamp(1_700_000_000_123_456)
        );
        assert_eq!(roundtrip(Some(3i32)), Some(3));
        assert_eq!(roundtrip(None::<i32>), None);
    }

    #[test]
    fn arrays_roundtrip() {
        assert_eq!(roundtrip(vec![1i64, 2, 3]), vec![1, 2, 3]);
        assert_eq!(roundtrip(vec![Some(1i32), None]), vec![Some(1), None]);
        assert_eq!(roundtrip(Vec::<String>::new()), Vec::<String>::new());
        assert_eq!(vec![1i64].sql_oid(), oid::INT8_ARRAY);
    }

    #[test]
    fn jsonb_has_version_byte() {
        let mut buf = BytesMut::new();
        Json("{\"a\":1}").to_sql(&mut buf).unwrap();
        assert_eq!(&buf[..], b"\x01{\"a\":1}");
        let j = Json::<String>::from_sql(oid::JSONB, &buf).unwrap();
        assert_eq!(j.0, "{\"a\":1}");
        assert!(Json::<String>::from_sql(oid::JSONB, b"\x02{}").is_err());
    }

    #[test]
    fn wrong_sizes_are_errors() {
        assert!(i32::from_sql(oid::INT4, &[0, 1]).is_err());
        assert!(uuid::Uuid::from_sql(oid::UUID, &[0; 3]).is_err());
        assert!(i32::from_sql_null(oid::INT4).is_err());
    }
}
