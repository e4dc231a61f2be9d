//! The set algebra's inputs and rules (ZUNION/ZINTER/ZDIFF and their STORE forms):
//! AGGREGATE, a weighted input that may be a sorted set or a plain set, and Redis's
//! weighting (`inf * 0 = 0`). Pure code, run by the shard that evaluates the command.

use bytes::Bytes;

use super::{Set, ZSet};

/// AGGREGATE of ZUNION/ZINTER.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregate {
    #[default]
    Sum,
    Min,
    Max,
}

impl Aggregate {
    pub(super) fn apply(self, acc: f64, v: f64) -> f64 {
        match self {
            Aggregate::Sum => {
                let s = acc + v;
                // +inf + -inf: Redis stores 0.
                if s.is_nan() {
                    0.0
                } else {
                    s
                }
            }
            Aggregate::Min => acc.min(v),
            Aggregate::Max => acc.max(v),
        }
    }
}

/// One source of ZUNION/ZINTER/ZDIFF: a sorted set, a plain set (every score 1), or a
/// missing key (empty).
#[derive(Debug, Clone, Copy)]
pub enum ZInput<'a> {
    ZSet(&'a ZSet),
    Set(&'a Set),
    Missing,
}

impl ZInput<'_> {
    pub(super) fn len(&self) -> usize {
        match self {
            ZInput::ZSet(z) => z.len(),
            ZInput::Set(s) => s.len(),
            ZInput::Missing => 0,
        }
    }

    pub(super) fn score(&self, member: &[u8]) -> Option<f64> {
        match self {
            ZInput::ZSet(z) => z.score(member),
            ZInput::Set(s) => s.contains(member).then_some(1.0),
            ZInput::Missing => None,
        }
    }

    pub(super) fn pairs(&self) -> Vec<(Bytes, f64)> {
        match self {
            ZInput::ZSet(z) => z.to_vec(),
            ZInput::Set(s) => s.iter().map(|m| (m, 1.0)).collect(),
            ZInput::Missing => Vec::new(),
        }
    }
}

/// `weight * score` with Redis's rule that `inf * 0` is 0.
pub(super) fn weighted(score: f64, weight: f64) -> f64 {
    let v = score * weight;
    if v.is_nan() {
        0.0
    } else {
        v
    }
}
