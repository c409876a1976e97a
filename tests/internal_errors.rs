//! A broken invariant on the server's side is the server's fault: the answer is a 500 with code
//! `internal`, never a 400 that blames the caller. Each test breaks one server-side function of a
//! real database (replacing it with one that answers what the real one never does) and calls the
//! route that reads it; the server keeps serving other requests afterwards.

#![allow(clippy::unwrap_used)]

mod support;

use queen_wire::Client as _;
use serde_json::json;
use support::Server;

/// A fresh database with the server on it, and a connection to replace functions with.
async fn server(name: &str) -> (Server, queen_wire::Connection) {
    let (db, s) = Server::start_with_db(name, &[]).await;
    let conn = queen_wire::Connection::connect(&db).await.unwrap();
    (s, conn)
}

async fn replace(conn: &queen_wire::Connection, sql: &str) {
    conn.batch_execute(sql).await.unwrap();
}

/// The server still answers a plain request after the failure.
async fn still_serves(s: &Server) {
    let r = s.get("/health").await.unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_push_answer_out_of_range_is_an_internal_error() {
    let (s, conn) = server("internal_push").await;
    replace(
        &conn,
        "CREATE OR REPLACE FUNCTION queen.push(
            p_parts bigint[], p_counts integer[], p_parts_sealed boolean[], p_pnums bigint[],
            p_ks integer[], p_ids uuid[], p_txuuids uuid[], p_txtexts text[], p_trace_ids uuid[],
            p_payloads text[], p_sealed bytea[], p_subs text[], p_strict boolean)
         RETURNS TABLE (ord integer, message_id uuid)
         LANGUAGE sql AS $$ SELECT 999, gen_random_uuid() $$",
    )
    .await;
    let r = s
        .post(
            "/api/v1/push",
            &json!({"items": [{"queue": "q", "payload": {"n": 1}}]}),
        )
        .await;
    r.assert_error(500, "internal");
    assert!(
        !r.json()["error"].as_str().unwrap().contains("999"),
        "the cause stays in the log: {}",
        r.json()
    );
    still_serves(&s).await;
}

#[tokio::test]
async fn an_ack_without_an_answer_is_an_internal_error() {
    let (s, conn) = server("internal_ack").await;
    replace(
        &conn,
        "CREATE OR REPLACE FUNCTION queen.ack(
            p_groups text[], p_partition_ids uuid[], p_txuuids uuid[], p_txtexts text[],
            p_statuses text[], p_errors text[], p_lease_ids uuid[], p_strict boolean)
         RETURNS TABLE (idx integer, success boolean, error text, queue_name text,
                        partition_name text, lease_released boolean, dlq boolean, noop boolean)
         LANGUAGE sql AS $$ SELECT 1, true, NULL, NULL, NULL, false, false, false WHERE false $$",
    )
    .await;
    let r = s
        .post(
            "/api/v1/ack",
            &json!({
                "transactionId": "t-1",
                "partitionId": "0193b0a2-1111-7000-8000-000000000001",
                "status": "completed",
            }),
        )
        .await;
    r.assert_error(500, "internal");
    still_serves(&s).await;
}

#[tokio::test]
async fn a_configure_without_a_row_is_an_internal_error() {
    let (s, conn) = server("internal_configure").await;
    replace(
        &conn,
        "CREATE OR REPLACE FUNCTION queen.configure(
            p_id uuid, p_name text, p_namespace text, p_task text, p_partition_id uuid,
            p_options jsonb)
         RETURNS SETOF queen.queues
         LANGUAGE sql AS $$ SELECT * FROM queen.queues WHERE false $$",
    )
    .await;
    let r = s
        .post("/api/v1/configure", &json!({"queue": "q", "options": {}}))
        .await;
    r.assert_error(500, "internal");
    still_serves(&s).await;
}

#[tokio::test]
async fn a_queue_without_its_default_partition_is_an_internal_error() {
    let (s, conn) = server("internal_default_partition").await;
    replace(
        &conn,
        "CREATE OR REPLACE FUNCTION queen.configure(
            p_id uuid, p_name text, p_namespace text, p_task text, p_partition_id uuid,
            p_options jsonb)
         RETURNS SETOF queen.queues
         LANGUAGE sql AS $$
            INSERT INTO queen.queues (id, name) VALUES (p_id, p_name)
            ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
            RETURNING * $$",
    )
    .await;
    let r = s
        .post("/api/v1/configure", &json!({"queue": "q", "options": {}}))
        .await;
    r.assert_error(500, "internal");
    still_serves(&s).await;
}

#[tokio::test]
async fn a_lease_extension_without_an_answer_is_an_internal_error() {
    let (s, conn) = server("internal_extend").await;
    replace(
        &conn,
        "CREATE OR REPLACE FUNCTION queen.extend_lease(p_lease_id uuid, p_seconds integer)
         RETURNS TABLE (renewed integer, expires_at timestamptz, error text)
         LANGUAGE sql AS $$ SELECT 0, now(), NULL::text WHERE false $$",
    )
    .await;
    let r = s
        .post(
            "/api/v1/lease/0193b0a2-1111-7000-8000-000000000001/extend",
            &json!({"seconds": 30}),
        )
        .await;
    r.assert_error(500, "internal");
    still_serves(&s).await;
}
