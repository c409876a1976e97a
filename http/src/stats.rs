//! Request counters and a latency histogram for `/metrics`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Counters of answered requests.
#[derive(Debug)]
pub struct RequestStats {
    total: AtomicU64,
    errors: AtomicU64,
    in_flight: AtomicU64,
    /// Microseconds, 1 µs .. 1 h, 2 significant digits. Long polls are excluded (their latency
    /// is the wait the client asked for).
    latency: Mutex<Histogram<u64>>,
}

impl Default for RequestStats {
    fn default() -> RequestStats {
        RequestStats {
            total: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            latency: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 2).unwrap_or_else(|_| {
                    Histogram::new(2).unwrap_or_else(|_| unreachable_histogram())
                }),
            ),
        }
    }
}

fn unreachable_histogram() -> Histogram<u64> {
    // `Histogram::new(2)` cannot fail (2 significant figures is in range); abort rather than panic.
    std::process::abort()
}

/// A request being served: counted in `in_flight` until dropped — also when its client goes
/// away and hyper drops the request's future before it answers.
#[derive(Debug)]
pub(crate) struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RequestStats {
    pub(crate) fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }

    pub(crate) fn finish(&self, elapsed: Duration, server_error: bool, record_latency: bool) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if server_error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if record_latency {
            let us = u64::try_from(elapsed.as_micros())
                .unwrap_or(u64::MAX)
                .clamp(1, 3_600_000_000);
            if let Ok(mut h) = self.latency.lock() {
                let _ = h.record(us);
            }
        }
    }

    /// Requests answered.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
    /// Requests answered with a 5xx.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
    /// Requests being served.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }
    /// Latency quantile in microseconds.
    pub fn quantile(&self, q: f64) -> u64 {
        self.latency
            .lock()
            .map(|h| h.value_at_quantile(q))
            .unwrap_or(0)
    }
}

/// Message throughput for the dashboard routes, from the engine's counters sampled every
/// [`Throughput::INTERVAL`] and kept for an hour in memory (no table grows with traffic).
#[derive(Debug, Default)]
pub struct Throughput {
    samples: std::sync::Mutex<std::collections::VecDeque<Sample>>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: queen_engine::Timestamp,
    counts: [u64; 3],
}

impl Throughput {
    /// Sampling period.
    pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
    const KEEP: usize = 361;

    /// Records the counters (pushed, popped, acked) now.
    pub fn sample(&self, counts: [u64; 3]) {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() == Self::KEEP {
            s.pop_front();
        }
        s.push_back(Sample {
            at: queen_engine::Timestamp::now(),
            counts,
        });
    }

    /// Messages per second over the last minute (or what has been sampled of it).
    pub fn rates(&self) -> serde_json::Value {
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        // The newest sample against the one a minute (six samples) before it, or the oldest.
        let span = match (s.back(), s.iter().rev().nth(6).or(s.front())) {
            (Some(last), Some(first)) if last.at.0 > first.at.0 => Some((first, last)),
            _ => None,
        };
        let rate = |i: usize| {
            span.map_or(0.0, |(first, last)| {
                (last.counts[i] - first.counts[i]) as f64 * 1e6 / (last.at.0 - first.at.0) as f64
            })
        };
        serde_json::json!({"pushedPerSecond": rate(0), "poppedPerSecond": rate(1), "ackedPerSecond": rate(2)})
    }

    /// Per-interval message counts over the last hour, oldest first.
    pub fn series(&self) -> serde_json::Value {
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let points: Vec<serde_json::Value> = s
            .iter()
            .zip(s.iter().skip(1))
            .map(|(a, b)| {
                serde_json::json!({
                    "timestamp": crate::time::format(b.at),
                    "pushed": b.counts[0] - a.counts[0],
                    "popped": b.counts[1] - a.counts[1],
                    "acked": b.counts[2] - a.counts[2],
                })
            })
            .collect();
        serde_json::json!({"intervalSeconds": Self::INTERVAL.as_secs(), "points": points})
    }
}
