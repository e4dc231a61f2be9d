//! Argument helpers for handlers: checked access and Redis-worded parse errors, so no
//! handler indexes client input directly. `glob_match` lives in `util::glob` (data types
//! use it too); it is re-exported here for the handlers.

use bytes::Bytes;

use crate::error::CmdError;
use crate::protocol::{parse_f64, parse_i64};

pub use crate::util::glob::glob_match;

/// The argument at `i`, or a syntax error when absent. (A `match`, not `ok_or`: the
/// eagerly built error was dropped out of line on every call, about 1% of a GET.)
#[inline]
pub fn arg(argv: &[Bytes], i: usize) -> Result<&Bytes, CmdError> {
    match argv.get(i) {
        Some(a) => Ok(a),
        None => Err(CmdError::Syntax),
    }
}

/// The argument at `i` as an integer (`ERR value is not an integer or out of range`).
pub fn int(argv: &[Bytes], i: usize) -> Result<i64, CmdError> {
    match parse_i64(arg(argv, i)?) {
        Some(n) => Ok(n),
        None => Err(CmdError::NotInteger),
    }
}

/// The argument at `i` as a float (`ERR value is not a valid float`).
pub fn float(argv: &[Bytes], i: usize) -> Result<f64, CmdError> {
    parse_f64(arg(argv, i)?).ok_or(CmdError::NotFloat)
}

/// Case-insensitive comparison with an ASCII keyword.
#[inline]
pub fn is(a: &[u8], kw: &str) -> bool {
    a.eq_ignore_ascii_case(kw.as_bytes())
}

/// Lossy text of an argument for error messages.
pub fn text(a: &[u8]) -> String {
    String::from_utf8_lossy(a).into_owned()
}

/// Copies client bytes into an owned value: stored data never pins a whole read buffer.
#[inline]
pub fn owned(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
}

/// The optional non-negative count at `i` (LPOP, SPOP, ZPOPMIN ...): Redis's
/// getPositiveLongFromObjectOrReply, one error text for both failures.
pub fn opt_count(argv: &[Bytes], i: usize) -> Result<Option<usize>, CmdError> {
    let Some(c) = argv.get(i) else {
        return Ok(None);
    };
    let n = parse_i64(c)
        .filter(|n| *n >= 0)
        .ok_or_else(|| CmdError::coded(crate::types::err::MUST_BE_POSITIVE))?;
    Ok(Some(usize::try_from(n).unwrap_or(usize::MAX)))
}

/// The arguments of LMPOP / ZMPOP (`numkeys key [key ...] <where> [COUNT count]`) in Redis's
/// check order: numkeys, then the where word (`parse_where`), then COUNT. Returns the keys,
/// the parsed where and the count (1 by default).
pub fn mpop_args<W>(
    argv: &[Bytes],
    parse_where: impl Fn(&Bytes) -> Result<W, CmdError>,
) -> Result<(&[Bytes], W, usize), CmdError> {
    let n = parse_i64(arg(argv, 1)?)
        .filter(|n| *n >= 1)
        .ok_or_else(|| CmdError::coded(crate::error::NUMKEYS_POSITIVE))?;
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    let where_idx = n.saturating_add(2);
    let wh = parse_where(argv.get(where_idx).ok_or(CmdError::Syntax)?)?;
    let mut count: Option<usize> = None;
    let mut i = where_idx + 1;
    while let Some(opt) = argv.get(i) {
        match argv.get(i + 1) {
            Some(c) if count.is_none() && is(opt, "count") => {
                let c = parse_i64(c)
                    .filter(|c| *c >= 1)
                    .ok_or_else(|| CmdError::err("count should be greater than 0"))?;
                count = Some(usize::try_from(c).unwrap_or(usize::MAX));
                i += 2;
            }
            _ => return Err(CmdError::Syntax),
        }
    }
    let keys = argv.get(2..where_idx).unwrap_or_default();
    Ok((keys, wh, count.unwrap_or(1)))
}
