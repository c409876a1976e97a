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

impl RequestStats {
    pub(crate) fn start(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn finish(&self, elapsed: Duration, server_error: bool, record_latency: bool) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
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
