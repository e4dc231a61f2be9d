//! Instantaneous rates for INFO (`instantaneous_ops_per_sec`, `instantaneous_input_kbps`,
//! `instantaneous_output_kbps`), measured the way Redis does: every 100 ms each shard samples
//! its counters, and a rate is the mean of the last 16 samples' per-second rates (so it
//! follows the load within about 1.6 s and falls to zero as fast once it stops). Each shard's
//! worker owns its sampler; INFO adds up the shards' rates.

use std::time::Instant;

/// Samples averaged (Redis's STATS_METRIC_SAMPLES).
pub const SAMPLES: usize = 16;

/// Per-second rates: commands, input bytes, output bytes.
#[derive(Default, Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    pub ops: f64,
    pub input_bytes: f64,
    pub output_bytes: f64,
}

impl Rates {
    pub fn add(&mut self, o: Rates) {
        self.ops += o.ops;
        self.input_bytes += o.input_bytes;
        self.output_bytes += o.output_bytes;
    }
}

/// The last readings of one shard's counters and the rates between them.
#[derive(Default)]
pub struct Sampler {
    last: Option<(Instant, [u64; 3])>,
    ring: [[f64; 3]; SAMPLES],
    next: usize,
}

impl Sampler {
    /// Records a reading of (commands processed, input bytes, output bytes) taken at `now`.
    pub fn sample(&mut self, now: Instant, counters: [u64; 3]) {
        if let Some((t, prev)) = self.last {
            let ms = now.saturating_duration_since(t).as_millis() as f64;
            if ms <= 0.0 {
                return;
            }
            let mut r = [0.0; 3];
            for (x, (c, p)) in r.iter_mut().zip(counters.iter().zip(prev)) {
                *x = c.saturating_sub(p) as f64 * 1000.0 / ms;
            }
            if let Some(slot) = self.ring.get_mut(self.next) {
                *slot = r;
            }
            self.next = (self.next + 1) % SAMPLES;
        }
        self.last = Some((now, counters));
    }

    /// The mean rates over the last [`SAMPLES`] samples (missing samples count as zero).
    pub fn rates(&self) -> Rates {
        let mut sum = [0.0; 3];
        for s in &self.ring {
            for (a, b) in sum.iter_mut().zip(s) {
                *a += b;
            }
        }
        let n = SAMPLES as f64;
        Rates {
            ops: sum[0] / n,
            input_bytes: sum[1] / n,
            output_bytes: sum[2] / n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_follow_the_load_and_fall_to_zero() {
        let mut s = Sampler::default();
        let t0 = Instant::now();
        assert_eq!(s.rates(), Rates::default());
        // 1000 commands, 50 kB in and 10 kB out per 100 ms, for 16 samples.
        for i in 0..=16u64 {
            s.sample(
                t0 + Duration::from_millis(100 * i),
                [1000 * i, 50_000 * i, 10_000 * i],
            );
        }
        let r = s.rates();
        assert!((r.ops - 10_000.0).abs() < 1e-6, "{r:?}");
        assert!((r.input_bytes - 500_000.0).abs() < 1e-6);
        assert!((r.output_bytes - 100_000.0).abs() < 1e-6);
        // Half the window idle: half the rate; a whole window idle: zero.
        for i in 17..=24u64 {
            s.sample(
                t0 + Duration::from_millis(100 * i),
                [16_000, 800_000, 160_000],
            );
        }
        assert!((s.rates().ops - 5_000.0).abs() < 1e-6);
        for i in 25..=40u64 {
            s.sample(
                t0 + Duration::from_millis(100 * i),
                [16_000, 800_000, 160_000],
            );
        }
        assert_eq!(s.rates(), Rates::default());
        // A reading at the same instant adds no sample.
        let t = t0 + Duration::from_millis(4000);
        s.sample(t, [16_100, 800_000, 160_000]);
        assert_eq!(s.rates(), Rates::default());
    }
}

/// The biggest client input and output buffers seen in each of the last eight seconds
/// (Redis's `CLIENTS_PEAK_MEM_USAGE_SLOTS`), sampled by the shard's 100 ms cron over its
/// connections: INFO's `client_recent_max_input_buffer` / `_output_buffer`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecentPeaks {
    /// (unix second, input bytes, output bytes) per slot `second % 8`.
    slots: [(u64, u64, u64); 8],
}

impl RecentPeaks {
    /// Notes one sample taken at unix second `sec`.
    pub fn note(&mut self, sec: u64, input: u64, output: u64) {
        let Some(s) = self.slots.get_mut((sec % 8) as usize) else {
            return;
        };
        if s.0 != sec {
            *s = (sec, 0, 0);
        }
        s.1 = s.1.max(input);
        s.2 = s.2.max(output);
    }

    /// The biggest input and output seen in the eight seconds up to `sec`.
    pub fn max(&self, sec: u64) -> (u64, u64) {
        self.slots
            .iter()
            .filter(|s| s.0 + 8 > sec && s.0 <= sec)
            .fold((0, 0), |(i, o), s| (i.max(s.1), o.max(s.2)))
    }
}

#[cfg(test)]
mod peak_tests {
    use super::RecentPeaks;

    #[test]
    fn peaks_last_eight_seconds() {
        let mut p = RecentPeaks::default();
        p.note(100, 5, 50);
        p.note(100, 9, 10);
        p.note(103, 7, 70);
        assert_eq!(p.max(103), (9, 70));
        assert_eq!(p.max(107), (9, 70));
        assert_eq!(p.max(108), (7, 70), "second 100 has left the window");
        p.note(111, 1, 1);
        assert_eq!(p.max(111), (1, 1), "slot 103 is stale, 111 reused slot 7");
    }
}
