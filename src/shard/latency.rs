//! Latency data of one shard (Redis's latency.c and its per-command histograms), merged by
//! LATENCY and INFO latencystats on read.
//!
//! - Per-command histograms: every command's run time (the same clock reading INFO
//!   commandstats uses) is recorded into an HdrHistogram of its command id, made on first use
//!   with Redis's bounds (1 ns to 1 s, 2 significant figures), while `latency-tracking` is on.
//! - The latency monitor: events (`command`, `fast-command`, `expire-cycle`,
//!   `eviction-cycle`) that took at least `latency-monitor-threshold` milliseconds keep up to
//!   160 one-second samples each, as Redis's time series do.
//!
//! Runs on each shard's thread; readers get copies through a fan-out.

use ahash::AHashMap;
use hdrhistogram::Histogram;

/// Samples kept per event (Redis's LATENCY_TS_LEN).
pub const TS_LEN: usize = 160;

/// Histogram bounds and precision, as Redis's LATENCY_HISTOGRAM_* constants.
const HIST_MIN: u64 = 1;
const HIST_MAX: u64 = 1_000_000_000;
const HIST_SIGFIG: u8 = 2;

/// One event's samples: (unix seconds, milliseconds), oldest first, and its all-time high.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Series {
    pub samples: std::collections::VecDeque<(i64, u64)>,
    pub max: u64,
}

impl Series {
    /// Adds a sample; one in the same second as the last one keeps the larger (as Redis).
    pub fn add(&mut self, time: i64, ms: u64) {
        self.max = self.max.max(ms);
        if let Some(last) = self.samples.back_mut() {
            if last.0 == time {
                last.1 = last.1.max(ms);
                return;
            }
        }
        self.samples.push_back((time, ms));
        while self.samples.len() > TS_LEN {
            self.samples.pop_front();
        }
    }

    /// Folds another shard's series in: samples by time, one per second (the larger).
    pub fn merge(&mut self, o: &Series) {
        self.max = self.max.max(o.max);
        let mut all: Vec<(i64, u64)> = self.samples.iter().chain(&o.samples).copied().collect();
        all.sort_unstable();
        let mut out: std::collections::VecDeque<(i64, u64)> = std::collections::VecDeque::new();
        for (t, ms) in all {
            match out.back_mut() {
                Some(last) if last.0 == t => last.1 = last.1.max(ms),
                _ => out.push_back((t, ms)),
            }
        }
        while out.len() > TS_LEN {
            out.pop_front();
        }
        self.samples = out;
    }
}

/// One shard's latency state.
pub struct Latency {
    /// `latency-tracking`: record per-command histograms.
    pub tracking: bool,
    /// `latency-monitor-threshold` in milliseconds (0: the monitor is off).
    pub threshold_ms: u64,
    /// Histograms by command id (made on first call).
    pub hist: Vec<Option<Box<Histogram<u64>>>>,
    pub events: AHashMap<&'static str, Series>,
    /// Counts calls past a histogram's exact prefix: one in `SAMPLE` is recorded.
    skip: u32,
}

/// Calls of a command a shard records exactly; past them one in `SAMPLE` is recorded with
/// weight `SAMPLE` (the histograms' percentiles stay unbiased, their counts within
/// `SAMPLE` of the calls), so a hot command pays a histogram update only every `SAMPLE`
/// calls: the paired A/B showed the update on every call costing ~2% at pipeline 16.
const EXACT: u64 = 1024;
const SAMPLE: u32 = 8;

impl Default for Latency {
    fn default() -> Self {
        Latency {
            tracking: true,
            threshold_ms: 0,
            hist: Vec::new(),
            events: AHashMap::new(),
            skip: 0,
        }
    }
}

/// A new empty histogram with Redis's bounds (the crate accepts these constants).
pub fn new_histogram() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(HIST_MIN, HIST_MAX, HIST_SIGFIG).ok()
}

impl Latency {
    /// Records a command's run time in its histogram.
    #[inline]
    pub fn record(&mut self, id: usize, nanos: u64) {
        if let Some(Some(h)) = self.hist.get_mut(id) {
            if h.len() < EXACT {
                h.saturating_record(nanos.clamp(HIST_MIN, HIST_MAX));
            } else {
                self.skip = self.skip.wrapping_add(1);
                if self.skip.is_multiple_of(SAMPLE) {
                    let _ = h.record_n(nanos.clamp(HIST_MIN, HIST_MAX), u64::from(SAMPLE));
                }
            }
        } else {
            self.record_first(id, nanos);
        }
    }

    #[cold]
    fn record_first(&mut self, id: usize, nanos: u64) {
        if self.hist.len() <= id {
            self.hist.resize_with(id + 1, || None);
        }
        let Some(mut h) = new_histogram() else {
            return;
        };
        h.saturating_record(nanos.clamp(HIST_MIN, HIST_MAX));
        if let Some(slot) = self.hist.get_mut(id) {
            *slot = Some(Box::new(h));
        }
    }

    /// Adds a latency monitor sample when it reaches the threshold (Redis's
    /// `latencyAddSampleIfNeeded`).
    pub fn event(&mut self, name: &'static str, ms: u64) {
        if self.threshold_ms > 0 && ms >= self.threshold_ms {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            self.events.entry(name).or_default().add(now, ms);
        }
    }

    /// Copies of the histograms in use, by command id (for a reader on another shard).
    pub fn histograms(&self) -> Vec<(usize, Histogram<u64>)> {
        self.hist
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|h| (i, (**h).clone())))
            .collect()
    }
}

/// Adds `b`'s histograms into `a` (both by command id).
pub fn merge_histograms(a: &mut Vec<(usize, Histogram<u64>)>, b: Vec<(usize, Histogram<u64>)>) {
    for (id, h) in b {
        match a.iter_mut().find(|(i, _)| *i == id) {
            Some((_, mine)) => {
                // Same bounds on every shard: the addition cannot fail.
                let _ = mine.add(&h);
            }
            None => a.push((id, h)),
        }
    }
    a.sort_by_key(|(i, _)| *i);
}

/// The value at `p` percent as Redis's hdr_value_at_percentile computes it (the count
/// rounded to nearest, then the highest value equivalent to the bucket that reaches it).
pub fn percentile(h: &Histogram<u64>, p: f64) -> u64 {
    let p = p.min(100.0);
    let want = ((p / 100.0) * h.len() as f64 + 0.5) as u64;
    let mut seen = 0u64;
    for v in h.iter_recorded() {
        seen += v.count_at_value();
        if seen >= want {
            let x = v.value_iterated_to();
            return if p == 0.0 {
                h.lowest_equivalent(x)
            } else {
                h.highest_equivalent(x)
            };
        }
    }
    0
}

/// LATENCY HISTOGRAM's points: (µs, cumulative count) at each power-of-two level from 1024 ns,
/// where the count grew (Redis iterates its histogram logarithmically, base 2, and reports
/// each level's highest equivalent value).
pub fn cdf(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    let total = h.len();
    let recorded: Vec<(u64, u64)> = h
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect();
    let mut out = Vec::new();
    let (mut level, mut cum, mut at, mut prev) = (1024u64, 0u64, 0usize, 0u64);
    while cum < total || out.is_empty() {
        let high = h.highest_equivalent(level);
        while let Some(&(v, c)) = recorded.get(at) {
            if v > high {
                break;
            }
            cum += c;
            at += 1;
        }
        if cum > prev {
            out.push((high / 1000, cum));
        }
        prev = cum;
        if level > HIST_MAX * 4 {
            break;
        }
        level *= 2;
    }
    out
}

/// Redis's label for a percentile in INFO latencystats (`%f` with the zeros trimmed).
pub fn percentile_label(p: f64) -> String {
    let s = format!("{p:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Parses `latency-tracking-info-percentiles` ("50 99 99.9"); errors carry Redis's text.
pub fn parse_percentiles(v: &str) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for w in v.split_whitespace() {
        let p: f64 = w
            .parse()
            .ok()
            .filter(|p: &f64| p.is_finite())
            .ok_or_else(|| "Invalid latency-tracking-info-percentiles parameters".to_string())?;
        if !(0.0..=100.0).contains(&p) {
            return Err(
                "latency-tracking-info-percentiles parameters should sit between [0.0,100.0]"
                    .into(),
            );
        }
        out.push(p);
    }
    Ok(out)
}

/// The Redis-style text of a percentile list (`%f` trimmed, space separated).
pub fn format_percentiles(ps: &[f64]) -> String {
    ps.iter()
        .map(|p| percentile_label(*p))
        .collect::<Vec<_>>()
        .join(" ")
}

/// LATENCY GRAPH's ASCII art for `event` (Redis's sparkline: 80 columns, 4 rows, filled,
/// with "how long ago" labels under each sample).
pub fn graph(event: &str, s: &Series, now: i64) -> String {
    let vals: Vec<u64> = s.samples.iter().map(|x| x.1).collect();
    let (min, max) = (
        vals.iter().copied().min().unwrap_or(0),
        vals.iter().copied().max().unwrap_or(0),
    );
    let mut out = format!(
        "{event} - high {max} ms, low {min} ms (all time high {} ms)\n",
        s.max
    );
    out.push_str(&"-".repeat(80));
    out.push('\n');
    let labels: Vec<String> = s
        .samples
        .iter()
        .map(|(t, _)| {
            let e = now - t;
            if e < 60 {
                format!("{e}s")
            } else if e < 3600 {
                format!("{}m", e / 60)
            } else if e < 86400 {
                format!("{}h", e / 3600)
            } else {
                format!("{}d", e / 86400)
            }
        })
        .collect();
    let mut first = true;
    for start in (0..vals.len()).step_by(80) {
        let end = (start + 80).min(vals.len());
        if !first {
            out.push('\n');
        }
        first = false;
        render_range(
            &mut out,
            vals.get(start..end).unwrap_or_default(),
            labels.get(start..end).unwrap_or_default(),
            min,
            max,
        );
    }
    out
}

/// One strip of up to 80 samples: 4 rows of `_o#` steps (`|` below a bar's top), a blank
/// row, then the labels written downwards, one character per row.
fn render_range(out: &mut String, vals: &[u64], labels: &[String], min: u64, max: u64) {
    const ROWS: i64 = 4;
    const FILL: [u8; 3] = *b"_o#";
    let steps = 3 * ROWS;
    let relmax = (max - min) as f64;
    for row in 0..ROWS {
        let line: String = vals
            .iter()
            .map(|&v| {
                let rel = (v - min) as f64;
                // Redis: (int)(relval*steps)/relmax, a NaN (one value) counting as 0.
                let step = ((rel * steps as f64).trunc() / relmax) as i64;
                let step = step.clamp(0, steps - 1);
                let idx = step - (ROWS - row - 1) * 3;
                if (0..3).contains(&idx) {
                    char::from(FILL[idx as usize])
                } else if idx >= 3 {
                    '|'
                } else {
                    ' '
                }
            })
            .collect();
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&" ".repeat(vals.len()));
    out.push('\n');
    let longest = labels.iter().map(|l| l.len()).max().unwrap_or(0);
    for i in 0..longest {
        let line: String = labels
            .iter()
            .map(|l| l.as_bytes().get(i).map_or(' ', |b| char::from(*b)))
            .collect();
        out.push_str(&line);
        out.push('\n');
    }
}

/// Redis's latency analysis of one event: (samples, average, mean deviation, period).
fn analyze(s: &Series, now: i64) -> (u64, u64, u64, f64) {
    let n = s.samples.len() as u64;
    if n == 0 {
        return (0, 0, 0, 0.0);
    }
    let sum: u64 = s.samples.iter().map(|x| x.1).sum();
    let avg = sum / n;
    let oldest = s.samples.iter().map(|x| x.0).min().unwrap_or(now);
    let period = (now - oldest).max(1);
    let mad = s
        .samples
        .iter()
        .map(|x| (avg as i64 - x.1 as i64).unsigned_abs())
        .sum::<u64>()
        / n;
    (n, avg, mad, period as f64 / n as f64)
}

/// LATENCY DOCTOR's report (Redis's wording for the cases it covers; the advice list is a
/// subset of Redis's: the slow-log ones, large objects, and expiry/eviction).
pub fn doctor(
    events: &[(&'static str, Series)],
    threshold_ms: u64,
    slowlog_us: i64,
    slowlog_len: u64,
    now: i64,
) -> String {
    if threshold_ms == 0 {
        return "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Redis instance. You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in order to enable it. If we weren't in a deep space mission I'd suggest to take a look at https://redis.io/topics/latency-monitor.\n".into();
    }
    if events.is_empty() {
        return "Dave, no latency spike was observed during the lifetime of this Redis instance, not in the slightest bit. I honestly think you ought to sit down calmly, take a stress pill, and think things over.\n".into();
    }
    let mut out = String::from(
        "Dave, I have observed latency spikes in this Redis instance. You don't mind talking about it, do you Dave?\n\n",
    );
    let (mut slow_enable, mut slow_tune, mut slow_inspect, mut large, mut expiry) =
        (false, false, false, false, false);
    for (i, (name, s)) in events.iter().enumerate() {
        let (n, avg, mad, period) = analyze(s, now);
        out.push_str(&format!(
            "{}. {name}: {n} latency spikes (average {avg}ms, mean deviation {mad}ms, period {period:.2} sec). Worst all time event {}ms.",
            i + 1,
            s.max
        ));
        out.push('\n');
        match *name {
            "command" | "fast-command" => {
                if slowlog_us < 0 || slowlog_len == 0 {
                    slow_enable = true;
                } else if (slowlog_us / 1000) as u64 > threshold_ms {
                    slow_tune = true;
                }
                slow_inspect = true;
                large |= *name == "command";
            }
            "expire-cycle" | "eviction-cycle" => expiry = true,
            _ => {}
        }
    }
    out.push_str("\nI have a few advices for you:\n\n");
    if slow_enable {
        out.push_str("- There are latency issues with potentially slow commands you are using. Try to enable the Slow Log Redis feature using the command 'CONFIG SET slowlog-log-slower-than <microseconds>'. If the Slow log is disabled Redis is not able to log slow commands execution for you.\n");
    }
    if slow_tune {
        out.push_str(&format!("- Your current Slow Log configuration only logs events that are slower than your configured latency monitor threshold. Please use 'CONFIG SET slowlog-log-slower-than {}'.\n", threshold_ms * 1000));
    }
    if slow_inspect {
        out.push_str("- Check your Slow Log to understand what are the commands you are running which are too slow to execute. Please check https://redis.io/commands/slowlog for more information.\n");
    }
    if large {
        out.push_str("- Deleting, expiring or evicting (because of maxmemory policy) large objects is a blocking operation. If you have very large objects that are often deleted, expired, or evicted, try to fragment those objects into multiple smaller objects.\n");
    }
    if expiry {
        out.push_str("- Your dataset has many keys expiring or being evicted at the same time: the shard pauses for its expiry and eviction cycles. Spread the expire times of your keys, or raise maxmemory.\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keep_one_sample_a_second_and_merge() {
        let mut a = Series::default();
        a.add(10, 5);
        a.add(10, 3);
        a.add(11, 7);
        assert_eq!(a.samples, [(10, 5), (11, 7)]);
        let mut b = Series::default();
        b.add(11, 9);
        b.add(12, 1);
        a.merge(&b);
        assert_eq!(a.samples, [(10, 5), (11, 9), (12, 1)]);
        assert_eq!(a.max, 9);
        for t in 0..200 {
            a.add(100 + t, 1);
        }
        assert_eq!(a.samples.len(), TS_LEN);
    }

    #[test]
    fn graph_of_one_sample_matches_redis() {
        let mut s = Series::default();
        s.add(100, 50);
        let g = graph("command", &s, 100);
        let want = format!(
            "command - high 50 ms, low 50 ms (all time high 50 ms)\n{}\n \n \n \n_\n \n0\ns\n",
            "-".repeat(80)
        );
        assert_eq!(g, want);
    }

    #[test]
    fn cdf_points_as_redis() {
        let mut h = new_histogram().unwrap();
        // Redis reported 8:1, 16:4 for one call near 8 µs and three near 9-11 µs.
        h.saturating_record(8_000);
        for v in [9_000, 10_500, 11_000] {
            h.saturating_record(v);
        }
        assert_eq!(cdf(&h), vec![(8, 1), (16, 4)]);
        let mut h = new_histogram().unwrap();
        h.saturating_record(30_000_000);
        h.saturating_record(50_000_000);
        assert_eq!(cdf(&h), vec![(33816, 1), (67633, 2)]);
        let mut h = new_histogram().unwrap();
        h.saturating_record(10);
        assert_eq!(cdf(&h), vec![(1, 1)]);
    }

    #[test]
    fn percentiles() {
        let mut h = new_histogram().unwrap();
        for v in 1..=1000u64 {
            h.saturating_record(v * 1000);
        }
        let p50 = percentile(&h, 50.0);
        assert!((495_000..=505_000).contains(&p50), "{p50}");
        assert_eq!(percentile_label(99.9), "99.9");
        assert_eq!(percentile_label(50.0), "50");
        assert_eq!(
            parse_percentiles("50 99 99.9").unwrap(),
            vec![50.0, 99.0, 99.9]
        );
        assert!(parse_percentiles("50 200").is_err());
        assert!(parse_percentiles("x").is_err());
        assert_eq!(format_percentiles(&[50.0, 99.9]), "50 99.9");
    }
}

/// The observability settings CONFIG SET may change (slow log, latency monitor and
/// tracking), read by each shard once per loop pass when `gen` moved.
#[derive(Debug)]
pub struct Tunables {
    pub slower_than_us: std::sync::atomic::AtomicI64,
    pub slowlog_max_len: std::sync::atomic::AtomicU64,
    pub monitor_threshold_ms: std::sync::atomic::AtomicU64,
    pub tracking: std::sync::atomic::AtomicBool,
    pub gen: std::sync::atomic::AtomicU64,
}

/// The settings this module owns, with Redis's defaults.
pub const SETTINGS: &[(&str, &str)] = &[
    ("slowlog-log-slower-than", "10000"),
    ("slowlog-max-len", "128"),
    ("latency-monitor-threshold", "0"),
    ("latency-tracking", "yes"),
    ("latency-tracking-info-percentiles", "50 99 99.9"),
];

/// A parsed setting.
pub enum Setting {
    SlowerThan(i64),
    MaxLen(u64),
    Threshold(u64),
    Tracking(bool),
    Percentiles(Vec<f64>),
}

/// Validates one of [`SETTINGS`]: the value and its CONFIG GET form, or Redis's error text.
/// `None` when `name` is not one of them.
pub fn parse_setting(name: &str, v: &str) -> Option<Result<(Setting, String), String>> {
    let int = |min: i64| -> Result<i64, String> {
        let n: i64 = v
            .trim()
            .parse()
            .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
        if n < min {
            return Err(format!(
                "argument must be between {min} and 9223372036854775807 inclusive"
            ));
        }
        Ok(n)
    };
    let r = match name {
        "slowlog-log-slower-than" => int(-1).map(|n| (Setting::SlowerThan(n), n.to_string())),
        "slowlog-max-len" => int(0).map(|n| (Setting::MaxLen(n as u64), n.to_string())),
        "latency-monitor-threshold" => {
            int(0).map(|n| (Setting::Threshold(n as u64), n.to_string()))
        }
        "latency-tracking" => match v.to_ascii_lowercase().as_str() {
            "yes" => Ok((Setting::Tracking(true), "yes".to_string())),
            "no" => Ok((Setting::Tracking(false), "no".to_string())),
            _ => Err("argument must be 'yes' or 'no'".to_string()),
        },
        "latency-tracking-info-percentiles" => {
            parse_percentiles(v).map(|p| (Setting::Percentiles(p.clone()), format_percentiles(&p)))
        }
        _ => return None,
    };
    Some(r)
}

impl Tunables {
    /// From the settings' texts (CONFIG GET values), defaults for what is missing.
    pub fn new(get: impl Fn(&str) -> Option<String>) -> Tunables {
        let t = Tunables {
            slower_than_us: 10_000.into(),
            slowlog_max_len: 128.into(),
            monitor_threshold_ms: 0.into(),
            tracking: true.into(),
            gen: 1.into(),
        };
        for (name, _) in SETTINGS {
            if let Some(v) = get(name) {
                if let Some(Ok((s, _))) = parse_setting(name, &v) {
                    t.apply(s);
                }
            }
        }
        t
    }

    /// Stores a parsed setting; shards pick it up on their next pass.
    pub fn apply(&self, s: Setting) {
        use std::sync::atomic::Ordering::Relaxed;
        match s {
            Setting::SlowerThan(n) => self.slower_than_us.store(n, Relaxed),
            Setting::MaxLen(n) => self.slowlog_max_len.store(n, Relaxed),
            Setting::Threshold(n) => self.monitor_threshold_ms.store(n, Relaxed),
            Setting::Tracking(b) => self.tracking.store(b, Relaxed),
            Setting::Percentiles(_) => {}
        }
        self.gen.fetch_add(1, Relaxed);
    }
}
