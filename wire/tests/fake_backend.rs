//! The connection task against a scripted backend: partial frames, an error mid-pipeline, a
//! disconnect mid-pipeline, a protocol violation. No server involved.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use bytes::{BufMut, BytesMut};
use queen_wire::{Client, Config, Connection, Error, Pipeline};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn ready() -> Vec<u8> {
    msg(b'Z', b"I")
}

/// The answer to `Parse/Bind/Describe/Execute` of `SELECT <n>::int4`.
fn select_int(n: i32) -> Vec<u8> {
    let mut out = msg(b'1', &[]);
    out.extend(msg(b'2', &[]));
    let mut desc = BytesMut::new();
    desc.put_i16(1);
    desc.put_slice(&cstr("n"));
    desc.put_u32(0);
    desc.put_i16(0);
    desc.put_u32(23); // int4
    desc.put_i16(4);
    desc.put_i32(-1);
    desc.put_i16(1);
    out.extend(msg(b'T', &desc));
    let mut row = BytesMut::new();
    row.put_i16(1);
    row.put_i32(4);
    row.put_i32(n);
    out.extend(msg(b'D', &row));
    out.extend(msg(b'C', &cstr("SELECT 1")));
    out
}

fn error(code: &str, text: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (t, v) in [(b'S', "ERROR"), (b'V', "ERROR"), (b'C', code), (b'M', text)] {
        body.push(t);
        body.extend(cstr(v));
    }
    body.push(0);
    msg(b'E', &body)
}

/// Reads frontend messages until `syncs` Sync messages were seen.
async fn read_until_syncs(s: &mut DuplexStream, buf: &mut BytesMut, syncs: usize) {
    let mut seen = 0;
    while seen < syncs {
        while buf.len() >= 5 {
            let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() < 1 + len {
                break;
            }
            let frame = buf.split_to(1 + len);
            if frame[0] == b'S' {
                seen += 1;
            }
        }
        if seen < syncs {
            assert!(s.read_buf(buf).await.unwrap() > 0, "client closed early");
        }
    }
}

/// Starts a connection over an in-memory pipe; the returned stream is the server side, already
/// past startup.
async fn connect() -> (Connection, DuplexStream, BytesMut) {
    let (client, mut server) = tokio::io::duplex(1 << 16);
    let srv = tokio::spawn(async move {
        let mut buf = BytesMut::new();
        // Startup packet: length-prefixed, no tag.
        while buf.len() < 4
            || buf.len() < i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize
        {
            server.read_buf(&mut buf).await.unwrap();
        }
        let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let _ = buf.split_to(len);
        let mut out = msg(b'R', &0i32.to_be_bytes());
        let mut key = 7i32.to_be_bytes().to_vec();
        key.extend(9i32.to_be_bytes());
        out.extend(msg(b'K', &key));
        out.extend(ready());
        server.write_all(&out).await.unwrap();
        (server, buf)
    });
    let conn = Connection::from_stream(client, &Config::default())
        .await
        .unwrap();
    let (server, buf) = srv.await.unwrap();
    (conn, server, buf)
}

fn three_selects() -> Pipeline {
    let mut p = Pipeline::new();
    for _ in 0..3 {
        p.query_sql("SELECT n", &[]).unwrap().sync();
    }
    p
}

fn int_of(seg: &queen_wire::SegmentResult) -> i32 {
    seg.as_ref().unwrap()[0].rows[0].get::<i32>(0).unwrap()
}

#[tokio::test]
async fn responses_split_into_single_bytes() {
    let (conn, mut server, mut buf) = connect().await;
    let backend = tokio::spawn(async move {
        read_until_syncs(&mut server, &mut buf, 3).await;
        let mut out = Vec::new();
        for n in [10, 20, 30] {
            out.extend(select_int(n));
            out.extend(ready());
        }
        for b in out {
            server.write_all(&[b]).await.unwrap();
            tokio::task::yield_now().await;
        }
        server
    });
    let segs = conn.send(three_selects()).await.unwrap();
    assert_eq!(
        segs.iter().map(int_of).collect::<Vec<_>>(),
        vec![10, 20, 30]
    );
    drop(backend.await.unwrap());
}

#[tokio::test]
async fn an_error_fails_only_its_segment() {
    let (conn, mut server, mut buf) = connect().await;
    let backend = tokio::spawn(async move {
        read_until_syncs(&mut server, &mut buf, 3).await;
        let mut out = select_int(1);
        out.extend(ready());
        // Segment 2 fails after Parse/Bind; the server skips to its Sync.
        out.extend(msg(b'1', &[]));
        out.extend(msg(b'2', &[]));
        out.extend(error("23505", "duplicate key"));
        out.extend(ready());
        out.extend(select_int(3));
        out.extend(ready());
        server.write_all(&out).await.unwrap();
        // A later pipeline on the same connection.
        read_until_syncs(&mut server, &mut buf, 1).await;
        out = select_int(4);
        out.extend(ready());
        server.write_all(&out).await.unwrap();
        server
    });
    let segs = conn.send(three_selects()).await.unwrap();
    assert_eq!(int_of(&segs[0]), 1);
    let err = segs[1].as_ref().unwrap_err();
    assert_eq!(err.code(), Some("23505"));
    assert!(!err.is_connection());
    assert_eq!(int_of(&segs[2]), 3);
    let rows = conn.query_sql("SELECT n", &[]).await.unwrap();
    assert_eq!(rows[0].get::<i32>(0).unwrap(), 4);
    drop(backend.await.unwrap());
}

#[tokio::test]
async fn a_disconnect_fails_everything_in_flight_with_a_connection_error() {
    let (conn, mut server, mut buf) = connect().await;
    let backend = tokio::spawn(async move {
        read_until_syncs(&mut server, &mut buf, 3).await;
        let mut out = select_int(1);
        out.extend(ready());
        let half = select_int(2);
        out.extend(&half[..half.len() / 2]);
        server.write_all(&out).await.unwrap();
        // The server goes away mid-frame.
    });
    let second = {
        let conn = conn.clone();
        tokio::spawn(async move {
            let mut p = Pipeline::new();
            p.query_sql("SELECT n", &[]).unwrap();
            conn.send(p).await
        })
    };
    let first = conn.send(three_selects()).await;
    backend.await.unwrap();
    let err = first.unwrap_err();
    assert!(err.is_connection(), "{err}");
    let err = second.await.unwrap().unwrap_err();
    assert!(err.is_connection(), "{err}");
    conn.closed().await;
    assert!(conn.is_closed());
    assert!(matches!(
        conn.query_sql("SELECT 1", &[]).await,
        Err(Error::Closed)
    ));
}

#[tokio::test]
async fn a_protocol_violation_closes_the_connection() {
    let (conn, mut server, mut buf) = connect().await;
    let backend = tokio::spawn(async move {
        read_until_syncs(&mut server, &mut buf, 1).await;
        // CommandComplete where BindComplete/ParseComplete is due... after a DataRow with no
        // description.
        let mut row = BytesMut::new();
        row.put_i16(1);
        row.put_i32(-1);
        let mut out = msg(b'1', &[]);
        out.extend(msg(b'2', &[]));
        out.extend(msg(b'D', &row));
        server.write_all(&out).await.unwrap();
        server
    });
    let err = conn.query_sql("SELECT n", &[]).await.unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err}");
    conn.closed().await;
    drop(backend.await.unwrap());
}

mod fuzz {
    //! Whatever a backend sends after startup — well-formed frames of any kind and content,
    //! garbage, frames cut anywhere — the connection task never panics and never allocates
    //! without bound: every pipeline gets an answer (rows or an error). Runs `PROPTEST_CASES`
    //! cases (256 by default; more on demand).

    use super::*;
    use proptest::prelude::*;

    /// A backend frame: a known or arbitrary tag with an arbitrary body (lengths may lie).
    fn frame() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (
                prop::sample::select(b"123CDEGHIKNRSTZnstdcAv".to_vec()),
                prop::collection::vec(any::<u8>(), 0..64)
            )
                .prop_map(|(tag, body)| msg(tag, &body)),
            (
                any::<u8>(),
                any::<i32>(),
                prop::collection::vec(any::<u8>(), 0..32)
            )
                .prop_map(|(tag, len, body)| {
                    let mut m = vec![tag];
                    m.extend_from_slice(&len.to_be_bytes());
                    m.extend(body);
                    m
                }),
            Just(select_int(1)),
            Just(ready()),
            Just(error("42P01", "nope")),
        ]
    }

    proptest! {
        #[test]
        fn any_backend_bytes_are_survived(frames in prop::collection::vec(frame(), 0..12), cut in 0usize..4096) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let (conn, mut server, mut buf) = connect().await;
                let backend = tokio::spawn(async move {
                    read_until_syncs(&mut server, &mut buf, 3).await;
                    let bytes: Vec<u8> = frames.concat();
                    let cut = cut.min(bytes.len());
                    let _ = server.write_all(&bytes[..cut]).await;
                    // Then the server goes away: everything pending must be answered.
                });
                let answer = tokio::time::timeout(std::time::Duration::from_secs(10), conn.send(three_selects())).await;
                prop_assert!(answer.is_ok(), "the pipeline was never answered");
                let _ = backend.await;
                Ok(())
            })?;
        }
    }
}
