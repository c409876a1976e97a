//! Queue details rendered once per analytics snapshot and shared by every reader.
//!
//! A queue's detail (`GET /resources/queues/{q}`, `/status/queues/{q}`) lists every partition
//! with its figures: 2.4 MB of JSON at 10,000 partitions, tens of milliseconds of CPU to
//! render, while everything in it comes from the snapshot (refreshed at most once per
//! `ANALYTICS_MAX_AGE`) and the queue's options. Dashboards poll it, often several at once, so
//! the rendered body is kept per queue with the snapshot it came from:
//!
//! * same snapshot and options: the kept body is the answer (a reference-counted copy);
//! * a newer snapshot, same options: the kept body is still the answer while one render of the
//!   new snapshot runs on the blocking pool, as long as the kept figures are younger than the
//!   snapshot policy's `stale_limit` (the age up to which the engine itself serves a snapshot
//!   while refreshing it, as `Engine::analytics_policy` gives it); its `asOf` says when they
//!   were read. Readers never wait for a render another reader already started;
//! * nothing kept, kept figures past `stale_limit`, or the options changed (a configure): the
//!   reader renders, on the blocking pool (readers arriving together then each render; the
//!   last render stored is kept).
//!
//! Bodies past `stale_limit` are dropped whenever one is stored, so memory follows the queues
//! viewed lately, not every queue ever viewed. Cancel-safety: a reader that goes away leaves a
//! started render to finish and be stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use queen_engine::analytics::Snapshot;
use queen_engine::{QueueInfo, Timestamp};

use crate::body;
use crate::error::ApiError;
use crate::views;

/// One queue's rendered detail.
#[derive(Debug)]
struct Kept {
    /// When the figures of the snapshot it was rendered from were read (a snapshot's identity).
    as_of: Timestamp,
    info: QueueInfo,
    body: Bytes,
    /// A render of a newer snapshot is running.
    rendering: bool,
}

/// The rendered details, by queue name.
#[derive(Debug, Default)]
pub(crate) struct RenderedDetails {
    kept: Mutex<HashMap<String, Kept>>,
}

/// Renders one queue's detail.
fn render(info: &QueueInfo, snap: &Snapshot) -> Result<Bytes, ApiError> {
    body::json_bytes(&views::QueueDetail::new(
        info,
        snap.queue(&info.name),
        snap.as_of,
    ))
}

/// How long ago `t` was, saturating at zero for a clock that stepped back.
fn age(t: Timestamp) -> Duration {
    Duration::from_micros(u64::try_from(Timestamp::now().micros() - t.micros()).unwrap_or(0))
}

impl RenderedDetails {
    /// The detail of `info`'s queue from `snap` (the current snapshot), or from an earlier one
    /// younger than `stale_limit` while `snap`'s render runs.
    pub(crate) async fn get(
        self: &Arc<Self>,
        info: QueueInfo,
        snap: Arc<Snapshot>,
        stale_limit: Duration,
    ) -> Result<Bytes, ApiError> {
        {
            let mut kept = self.lock();
            if let Some(k) = kept.get_mut(&info.name).filter(|k| k.info == info) {
                if k.as_of == snap.as_of {
                    return Ok(k.body.clone());
                }
                if age(k.as_of) < stale_limit {
                    if !k.rendering {
                        k.rendering = true;
                        let this = Arc::clone(self);
                        tokio::task::spawn_blocking(move || {
                            let body = render(&info, &snap).ok();
                            this.store(info, &snap, body, stale_limit);
                        });
                    }
                    return Ok(k.body.clone());
                }
            }
        }
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let body = render(&info, &snap)?;
            this.store(info, &snap, Some(body.clone()), stale_limit);
            Ok(body)
        })
        .await
        .map_err(|e| ApiError::internal(format_args!("queue detail render failed: {e}")))?
    }

    /// Keeps `body` (when the render succeeded) and drops bodies past `stale_limit`.
    fn store(&self, info: QueueInfo, snap: &Snapshot, body: Option<Bytes>, stale_limit: Duration) {
        let mut kept = self.lock();
        kept.retain(|_, k| age(k.as_of) < stale_limit);
        match body {
            Some(body) => {
                kept.insert(
                    info.name.clone(),
                    Kept {
                        as_of: snap.as_of,
                        info,
                        body,
                        rendering: false,
                    },
                );
            }
            None => {
                if let Some(k) = kept.get_mut(&info.name) {
                    k.rendering = false;
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use queen_engine::analytics::{Counts, PartitionStats, QueueStats, Snapshot};
    use queen_engine::{QueueInfo, QueueOptions, Timestamp};
    use uuid::Uuid;

    use super::RenderedDetails;

    const STALE: Duration = Duration::from_secs(60);

    fn info(lease_time: i32) -> QueueInfo {
        QueueInfo {
            id: Uuid::nil(),
            name: "q".into(),
            namespace: None,
            task: None,
            default_partition_id: Uuid::nil(),
            options: QueueOptions {
                lease_time: Some(lease_time),
                ..QueueOptions::default()
            },
            created_at: Timestamp(0),
        }
    }

    /// A snapshot read `ago` before now, with `total` messages in the queue's one partition.
    fn snapshot(ago: Duration, total: i64) -> Arc<Snapshot> {
        let counts = Counts {
            total,
            ..Counts::default()
        };
        let as_of = Timestamp(Timestamp::now().micros() - ago.as_micros() as i64);
        Arc::new(Snapshot {
            as_of,
            queues: vec![QueueStats {
                id: Uuid::nil(),
                name: "q".into(),
                namespace: None,
                task: None,
                priority: 0,
                created_at: Timestamp(0),
                partitions: vec![PartitionStats {
                    id: Uuid::nil(),
                    name: "Default".into(),
                    created_at: Timestamp(0),
                    counts,
                    newest: None,
                }],
                totals: counts,
            }],
            groups: Vec::new(),
        })
    }

    fn figures(body: &[u8]) -> (String, i64, i64) {
        let v: serde_json::Value = serde_json::from_slice(body).expect("the body is JSON");
        (
            v["asOf"].as_str().expect("asOf").to_owned(),
            v["totals"]["total"].as_i64().expect("total"),
            v["options"]["leaseTime"].as_i64().expect("leaseTime"),
        )
    }

    #[tokio::test]
    async fn one_render_per_snapshot_is_shared() {
        let d = Arc::new(RenderedDetails::default());
        let snap = snapshot(Duration::ZERO, 5);
        let a = d
            .get(info(30), snap.clone(), STALE)
            .await
            .expect("rendered");
        let b = d.get(info(30), snap, STALE).await.expect("kept");
        assert_eq!(figures(&a).1, 5);
        assert_eq!(
            a.as_ptr(),
            b.as_ptr(),
            "the second reader gets the kept body"
        );
    }

    #[tokio::test]
    async fn a_newer_snapshot_is_served_once_rendered_behind_the_kept_body() {
        let d = Arc::new(RenderedDetails::default());
        let old = d
            .get(info(30), snapshot(Duration::from_secs(2), 5), STALE)
            .await
            .expect("rendered");
        let new = snapshot(Duration::ZERO, 7);
        // The first reader of the new snapshot gets the kept body and starts one render.
        let first = d.get(info(30), new.clone(), STALE).await.expect("kept");
        assert_eq!(first.as_ptr(), old.as_ptr());
        // Readers after it get the new figures once that render is stored.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let body = d.get(info(30), new.clone(), STALE).await.expect("served");
            if figures(&body).1 == 7 {
                assert_eq!(figures(&body).0, crate::time::format(new.as_of));
                break;
            }
            assert_eq!(body.as_ptr(), old.as_ptr(), "only the kept or the new body");
            assert!(
                std::time::Instant::now() < deadline,
                "the render never landed"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn changed_options_or_stale_figures_are_rendered_for_the_reader() {
        let d = Arc::new(RenderedDetails::default());
        d.get(info(30), snapshot(Duration::from_secs(2), 5), STALE)
            .await
            .expect("rendered");
        // A configure changed the options: the answer has them at once.
        let body = d
            .get(info(90), snapshot(Duration::ZERO, 6), STALE)
            .await
            .expect("rendered");
        assert_eq!((figures(&body).1, figures(&body).2), (6, 90));
        // Kept figures past the stale limit are not served.
        let d = Arc::new(RenderedDetails::default());
        let limit = Duration::from_secs(1);
        d.get(info(90), snapshot(Duration::from_secs(5), 8), limit)
            .await
            .expect("rendered");
        let body = d
            .get(info(90), snapshot(Duration::ZERO, 9), limit)
            .await
            .expect("rendered");
        assert_eq!(figures(&body).1, 9);
    }
}
