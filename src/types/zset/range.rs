//! ZRANGEBYSCORE / ZRANGEBYLEX argument parsing: score bounds (`(1.5`, `-inf`, Redis's
//! strtod rules), lex bounds (`[a`, `(b`, `-`, `+`) and LIMIT. Pure code, any thread.

use bytes::Bytes;

use super::super::err;

/// One end of a score range (`1.5`, `(1.5`, `-inf`, `+inf`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreBound {
    pub value: f64,
    pub exclusive: bool,
}

/// `min max` of ZRANGEBYSCORE/ZCOUNT/ZREMRANGEBYSCORE (for the REV forms the handler passes
/// the arguments swapped, as Redis does).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreRange {
    pub min: ScoreBound,
    pub max: ScoreBound,
}

/// `strtod` as Redis's `zslParseRange` uses it: leading spaces skipped, the empty string is
/// 0, overflow is ±inf, hex integers accepted, trailing bytes and NaN rejected.
fn strtod(s: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(s).ok()?;
    let t = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    if t.is_empty() {
        return Some(0.0);
    }
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, t.get(1..)?),
        Some(b'+') => (false, t.get(1..)?),
        _ => (false, t),
    };
    if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        let v = u64::from_str_radix(hex, 16).ok()? as f64;
        return Some(if neg { -v } else { v });
    }
    if !body.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == 'i' || c == 'I') {
        return None;
    }
    let v: f64 = t.parse().ok()?;
    (!v.is_nan()).then_some(v)
}

/// Parses one score bound; `ERR min or max is not a float` on failure.
pub fn parse_score_bound(s: &[u8]) -> Result<ScoreBound, &'static str> {
    let (exclusive, body) = match s.split_first() {
        Some((b'(', rest)) => (true, rest),
        _ => (false, s),
    };
    let value = strtod(body).ok_or(err::MIN_MAX_NOT_FLOAT)?;
    Ok(ScoreBound { value, exclusive })
}

/// Parses `min max` score bounds.
pub fn parse_score_range(min: &[u8], max: &[u8]) -> Result<ScoreRange, &'static str> {
    Ok(ScoreRange {
        min: parse_score_bound(min)?,
        max: parse_score_bound(max)?,
    })
}

/// One end of a lex range (`[a`, `(a`, `-`, `+`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexBound {
    /// `-`: below every member.
    Min,
    /// `+`: above every member.
    Max,
    Incl(Bytes),
    Excl(Bytes),
}

/// `min max` of ZRANGEBYLEX/ZLEXCOUNT/ZREMRANGEBYLEX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexRange {
    pub min: LexBound,
    pub max: LexBound,
}

/// Parses one lex bound; `ERR min or max not valid string range item` on failure.
pub fn parse_lex_bound(s: &[u8]) -> Result<LexBound, &'static str> {
    match s.split_first() {
        Some((b'+', [])) => Ok(LexBound::Max),
        Some((b'-', [])) => Ok(LexBound::Min),
        Some((b'[', rest)) => Ok(LexBound::Incl(Bytes::copy_from_slice(rest))),
        Some((b'(', rest)) => Ok(LexBound::Excl(Bytes::copy_from_slice(rest))),
        _ => Err(err::MIN_MAX_NOT_LEX),
    }
}

/// Parses `min max` lex bounds.
pub fn parse_lex_range(min: &[u8], max: &[u8]) -> Result<LexRange, &'static str> {
    Ok(LexRange {
        min: parse_lex_bound(min)?,
        max: parse_lex_bound(max)?,
    })
}

/// LIMIT offset count as Redis reads it: a negative offset gives nothing, a negative count
/// means "all the rest".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub offset: i64,
    pub count: i64,
}
