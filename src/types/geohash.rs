//! Geohash arithmetic for the GEO commands, computed exactly as Redis 7.0 does (geohash.c,
//! geohash_helper.c): a position is a 52-bit interleaving of 26 latitude and 26 longitude
//! bits over Redis's ranges (longitude ±180, latitude ±85.05112878, the Web Mercator
//! limits), and that integer is the member's sorted-set score. Searches cover the query
//! shape with a cell of the estimated precision and its eight neighbours, each cell being
//! one score interval of the sorted set; candidates are then filtered by the exact
//! haversine distance (Redis's earth radius, 6372797.560856 m). Every operation keeps
//! Redis's order of floating point steps (and uses the same libm functions), so scores,
//! distances and decoded coordinates match redis-server bit for bit.
//!
//! Pure functions on numbers; runs on whichever shard executes the command.

/// Bits per coordinate of a stored score (52 bits in all).
pub const STEP_MAX: u8 = 26;
pub const LAT_MIN: f64 = -85.05112878;
pub const LAT_MAX: f64 = 85.05112878;
pub const LON_MIN: f64 = -180.0;
pub const LON_MAX: f64 = 180.0;
/// Redis's earth radius (the quadratic mean radius of WGS-84), in meters.
pub const EARTH_RADIUS_M: f64 = 6372797.560856;
const MERCATOR_MAX: f64 = 20037726.37;
const D_R: f64 = std::f64::consts::PI / 180.0;

/// A geohash of `step` bits per coordinate (latitude in the even bits, longitude in the odd).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Hash {
    pub bits: u64,
    pub step: u8,
}

impl Hash {
    /// Redis's `HASHISZERO`: a neighbour excluded from the search.
    fn is_zero(&self) -> bool {
        self.bits == 0 && self.step == 0
    }

    /// The hash left-aligned to 52 bits (`geohashAlign52Bits`): a score.
    pub fn align52(&self) -> u64 {
        let shift = 52u32.saturating_sub(u32::from(self.step) * 2);
        self.bits.checked_shl(shift).unwrap_or(0)
    }

    /// The score interval `[min, max)` holding every point of this cell.
    pub fn score_range(&self) -> (f64, f64) {
        let next = Hash {
            bits: self.bits.wrapping_add(1),
            step: self.step,
        };
        (self.align52() as f64, next.align52() as f64)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

/// A decoded cell: its longitude and latitude extent.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Area {
    pub lon: Range,
    pub lat: Range,
}

const LON_RANGE: Range = Range {
    min: LON_MIN,
    max: LON_MAX,
};
const LAT_RANGE: Range = Range {
    min: LAT_MIN,
    max: LAT_MAX,
};

#[inline]
fn deg_rad(ang: f64) -> f64 {
    ang * D_R
}

#[inline]
fn rad_deg(ang: f64) -> f64 {
    ang / D_R
}

/// Spreads the low 32 bits of `v` over the even bit positions.
fn spread(v: u32) -> u64 {
    let mut x = u64::from(v);
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// Gathers the even bit positions of `v` into the low 32 bits.
fn squash(v: u64) -> u32 {
    let mut x = v & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x >> 16)) & 0x0000_0000_FFFF_FFFF;
    x as u32
}

/// Latitude bits in the even positions, longitude bits in the odd ones.
fn interleave(lat: u32, lon: u32) -> u64 {
    spread(lat) | (spread(lon) << 1)
}

/// `(lat, lon)` cell indexes of an interleaved hash.
fn deinterleave(bits: u64) -> (u32, u32) {
    (squash(bits), squash(bits >> 1))
}

/// C's `(uint32_t)` of a non-negative double below 2^32 (truncation); the offsets encoded
/// here are always in `0..=2^step`.
fn to_u32(v: f64) -> u32 {
    v as u32
}

/// `geohashEncode`: the cell of `step` bits holding the point, over the given ranges.
/// `None` outside Redis's coordinate limits or the ranges.
pub fn encode(lon_r: Range, lat_r: Range, lon: f64, lat: f64, step: u8) -> Option<Hash> {
    if step == 0 || step > 32 || lat_r.max == lat_r.min || lon_r.max == lon_r.min {
        return None;
    }
    if !(LON_MIN..=LON_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return None;
    }
    if lat < lat_r.min || lat > lat_r.max || lon < lon_r.min || lon > lon_r.max {
        return None;
    }
    let mut lat_off = (lat - lat_r.min) / (lat_r.max - lat_r.min);
    let mut lon_off = (lon - lon_r.min) / (lon_r.max - lon_r.min);
    let scale = (1u64 << step) as f64;
    lat_off *= scale;
    lon_off *= scale;
    Some(Hash {
        bits: interleave(to_u32(lat_off), to_u32(lon_off)),
        step,
    })
}

/// `geohashEncodeWGS84`: over Redis's coordinate ranges.
pub fn encode_wgs84(lon: f64, lat: f64, step: u8) -> Option<Hash> {
    encode(LON_RANGE, LAT_RANGE, lon, lat, step)
}

/// The 52-bit score of a valid position.
pub fn score_of(lon: f64, lat: f64) -> Option<u64> {
    encode_wgs84(lon, lat, STEP_MAX).map(|h| h.align52())
}

/// `geohashDecode` over Redis's ranges: the cell's extent.
pub fn decode(hash: Hash) -> Area {
    decode_in(LON_RANGE, LAT_RANGE, hash)
}

fn decode_in(lon_r: Range, lat_r: Range, hash: Hash) -> Area {
    let (ilat, ilon) = deinterleave(hash.bits);
    let lat_scale = lat_r.max - lat_r.min;
    let lon_scale = lon_r.max - lon_r.min;
    let div = (1u64 << hash.step.min(63)) as f64;
    Area {
        lat: Range {
            min: lat_r.min + (f64::from(ilat) * 1.0 / div) * lat_scale,
            max: lat_r.min + (f64::from(ilat.wrapping_add(1)) * 1.0 / div) * lat_scale,
        },
        lon: Range {
            min: lon_r.min + (f64::from(ilon) * 1.0 / div) * lon_scale,
            max: lon_r.min + (f64::from(ilon.wrapping_add(1)) * 1.0 / div) * lon_scale,
        },
    }
}

/// The cell's centre, clamped to the coordinate limits (`geohashDecodeAreaToLongLat`).
pub fn area_center(a: &Area) -> (f64, f64) {
    let lon = ((a.lon.min + a.lon.max) / 2.0).clamp(LON_MIN, LON_MAX);
    let lat = ((a.lat.min + a.lat.max) / 2.0).clamp(LAT_MIN, LAT_MAX);
    (lon, lat)
}

/// C's `(uint64_t)` of a double as x86-64 compilers emit it (values from 2^63 go through a
/// subtraction; out-of-range conversions give the "integer indefinite" pattern). Redis
/// casts any sorted-set score this way, so a score not written by GEOADD decodes as there.
pub fn score_bits(score: f64) -> u64 {
    const TWO63: f64 = 9_223_372_036_854_775_808.0;
    let cvt = |v: f64| -> u64 {
        if !(-TWO63..TWO63).contains(&v) {
            1u64 << 63
        } else {
            v as i64 as u64
        }
    };
    if score >= TWO63 {
        cvt(score - TWO63) ^ (1u64 << 63)
    } else {
        cvt(score)
    }
}

/// `decodeGeohash`: the position (longitude, latitude) a sorted-set score stands for.
pub fn decode_score(score: f64) -> (f64, f64) {
    area_center(&decode(Hash {
        bits: score_bits(score),
        step: STEP_MAX,
    }))
}

const GEOALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";

/// GEOHASH's 11-character string: the position re-encoded over the standard latitude range
/// (±90), 52 bits in ten characters and a final `0`.
pub fn geohash_string(score: f64) -> Option<[u8; 11]> {
    let (lon, lat) = decode_score(score);
    let r_lon = Range {
        min: -180.0,
        max: 180.0,
    };
    let r_lat = Range {
        min: -90.0,
        max: 90.0,
    };
    let h = encode(r_lon, r_lat, lon, lat, STEP_MAX)?;
    let mut out = [b'0'; 11];
    for (i, c) in out.iter_mut().enumerate().take(10) {
        let idx = (h.bits >> (52 - (i + 1) * 5)) & 0x1f;
        *c = *GEOALPHABET.get(idx as usize).unwrap_or(&b'0');
    }
    Some(out)
}

fn move_x(h: &mut Hash, d: i8) {
    if d == 0 {
        return;
    }
    let shift = 64 - u32::from(h.step) * 2;
    let mut x = h.bits & 0xaaaa_aaaa_aaaa_aaaa;
    let y = h.bits & 0x5555_5555_5555_5555;
    let zz = 0x5555_5555_5555_5555u64 >> shift;
    if d > 0 {
        x = x.wrapping_add(zz + 1);
    } else {
        x |= zz;
        x = x.wrapping_sub(zz + 1);
    }
    x &= 0xaaaa_aaaa_aaaa_aaaau64 >> shift;
    h.bits = x | y;
}

fn move_y(h: &mut Hash, d: i8) {
    if d == 0 {
        return;
    }
    let shift = 64 - u32::from(h.step) * 2;
    let x = h.bits & 0xaaaa_aaaa_aaaa_aaaa;
    let mut y = h.bits & 0x5555_5555_5555_5555;
    let zz = 0xaaaa_aaaa_aaaa_aaaau64 >> shift;
    if d > 0 {
        y = y.wrapping_add(zz + 1);
    } else {
        y |= zz;
        y = y.wrapping_sub(zz + 1);
    }
    y &= 0x5555_5555_5555_5555u64 >> shift;
    h.bits = x | y;
}

fn moved(h: Hash, dx: i8, dy: i8) -> Hash {
    let mut n = h;
    move_x(&mut n, dx);
    move_y(&mut n, dy);
    n
}

/// What a search looks for: a circle or an axis-aligned box around a centre, sizes in the
/// request's unit (`conversion` meters per unit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    pub lon: f64,
    pub lat: f64,
    /// Meters per unit of the sizes below.
    pub conversion: f64,
    pub kind: ShapeKind,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ShapeKind {
    Radius(f64),
    Box { width: f64, height: f64 },
}

/// `geohashEstimateStepsByRadius`: the cell precision for a search of this radius.
pub fn estimate_steps(range_m: f64, lat: f64) -> u8 {
    if range_m == 0.0 {
        return 26;
    }
    let mut range = range_m;
    let mut step: i32 = 1;
    while range < MERCATOR_MAX {
        range *= 2.0;
        step += 1;
    }
    step -= 2;
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, 26) as u8
}

/// `geohashBoundingBox`: `[min_lon, min_lat, max_lon, max_lat]` around the shape.
pub fn bounding_box(s: &Shape) -> [f64; 4] {
    let (h, w) = match s.kind {
        ShapeKind::Radius(r) => (r, r),
        ShapeKind::Box { width, height } => (height / 2.0, width / 2.0),
    };
    let height = s.conversion * h;
    let width = s.conversion * w;
    let lat_delta = rad_deg(height / EARTH_RADIUS_M);
    let lon_delta_top = rad_deg(width / EARTH_RADIUS_M / deg_rad(s.lat + lat_delta).cos());
    let lon_delta_bottom = rad_deg(width / EARTH_RADIUS_M / deg_rad(s.lat - lat_delta).cos());
    let south = s.lat < 0.0;
    let lon_delta = if south {
        lon_delta_bottom
    } else {
        lon_delta_top
    };
    [
        s.lon - lon_delta,
        s.lat - lat_delta,
        s.lon + lon_delta,
        s.lat + lat_delta,
    ]
}

/// The cells a search visits, in Redis's order: the centre cell, then north, south, east,
/// west, north-east, north-west, south-east, south-west; excluded neighbours are skipped.
pub fn search_cells(s: &Shape) -> Vec<Hash> {
    let [min_lon, min_lat, max_lon, max_lat] = bounding_box(s);
    let radius_m = match s.kind {
        ShapeKind::Radius(r) => r,
        ShapeKind::Box { width, height } => {
            ((width / 2.0) * (width / 2.0) + (height / 2.0) * (height / 2.0)).sqrt()
        }
    } * s.conversion;
    let mut steps = estimate_steps(radius_m, s.lat);
    let Some(mut hash) = encode_wgs84(s.lon, s.lat, steps) else {
        return Vec::new();
    };
    // Neighbours in Redis's GeoHashNeighbors order, built from the centre cell.
    let neighbours = |h: Hash| -> [Hash; 8] {
        [
            moved(h, 1, 0),   // east
            moved(h, -1, 0),  // west
            moved(h, 0, 1),   // north
            moved(h, 0, -1),  // south
            moved(h, 1, -1),  // south-east
            moved(h, -1, -1), // south-west
            moved(h, 1, 1),   // north-east
            moved(h, -1, 1),  // north-west
        ]
    };
    let [mut east, mut west, mut north, mut south, mut se, mut sw, mut ne, mut nw] =
        neighbours(hash);
    let decrease = decode(north).lat.max < max_lat
        || decode(south).lat.min > min_lat
        || decode(east).lon.max < max_lon
        || decode(west).lon.min > min_lon;
    if steps > 1 && decrease {
        steps -= 1;
        match encode_wgs84(s.lon, s.lat, steps) {
            Some(h) => hash = h,
            None => return Vec::new(),
        }
        [east, west, north, south, se, sw, ne, nw] = neighbours(hash);
    }
    let area = decode(hash);
    if steps >= 2 {
        let zero = Hash::default();
        if area.lat.min < min_lat {
            (south, sw, se) = (zero, zero, zero);
        }
        if area.lat.max > max_lat {
            (north, ne, nw) = (zero, zero, zero);
        }
        if area.lon.min < min_lon {
            (west, sw, nw) = (zero, zero, zero);
        }
        if area.lon.max > max_lon {
            (east, se, ne) = (zero, zero, zero);
        }
    }
    let all = [hash, north, south, east, west, ne, nw, se, sw];
    let mut out: Vec<Hash> = Vec::with_capacity(9);
    // Huge radii make neighbours coincide: a neighbour equal to the last neighbour visited
    // is skipped, as Redis does (the centre cell does not count as visited there).
    let mut last: Option<Hash> = None;
    for (i, h) in all.into_iter().enumerate() {
        if h.is_zero() || last == Some(h) {
            continue;
        }
        out.push(h);
        if i > 0 {
            last = Some(h);
        }
    }
    out
}

/// Haversine great-circle distance in meters (`geohashGetDistance`).
pub fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let lat1r = deg_rad(lat1);
    let lon1r = deg_rad(lon1);
    let lat2r = deg_rad(lat2);
    let lon2r = deg_rad(lon2);
    let u = ((lat2r - lat1r) / 2.0).sin();
    let v = ((lon2r - lon1r) / 2.0).sin();
    2.0 * EARTH_RADIUS_M * (u * u + lat1r.cos() * lat2r.cos() * v * v).sqrt().asin()
}

/// The point's distance from the shape's centre in meters when it lies inside the shape
/// (`geohashGetDistanceIfInRadius` / `geohashGetDistanceIfInRectangle`).
pub fn distance_if_within(s: &Shape, lon: f64, lat: f64) -> Option<f64> {
    match s.kind {
        ShapeKind::Radius(r) => {
            let d = distance(s.lon, s.lat, lon, lat);
            (d <= r * s.conversion).then_some(d)
        }
        ShapeKind::Box { width, height } => {
            let (w, h) = (width * s.conversion, height * s.conversion);
            let lon_d = distance(lon, lat, s.lon, lat);
            let lat_d = distance(lon, lat, lon, s.lat);
            if lon_d > w / 2.0 || lat_d > h / 2.0 {
                return None;
            }
            Some(distance(s.lon, s.lat, lon, lat))
        }
    }
}

/// A coordinate as Redis's `addReplyHumanLongDouble` prints it: `%.17Lf` with trailing
/// zeros (and a bare point) removed, `-0` as `0`.
pub fn fmt_human(v: f64) -> String {
    let mut s = format!("{v:.17}");
    if s.contains('.') {
        let trimmed = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(trimmed);
    }
    if s == "-0" {
        s = "0".into();
    }
    s
}

/// A distance as Redis replies it (`%.4f`).
pub fn fmt_distance(v: f64) -> String {
    format!("{v:.4}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_round_trips() {
        for (a, b) in [
            (0u32, 0u32),
            (1, 0),
            (0, 1),
            (0x3ff_ffff, 0x155_5555),
            (u32::MAX, 7),
        ] {
            assert_eq!(deinterleave(interleave(a, b)), (a, b));
        }
        assert_eq!(interleave(1, 0), 1);
        assert_eq!(interleave(0, 1), 2);
    }

    #[test]
    fn scores_match_redis() {
        // GEOADD Sicily 13.361389 38.115556 "Palermo" 15.087269 37.502669 "Catania"
        assert_eq!(score_of(13.361389, 38.115556), Some(3479099956230698));
        assert_eq!(score_of(15.087269, 37.502669), Some(3479447370796909));
        assert_eq!(score_of(181.0, 0.0), None);
        assert_eq!(score_of(0.0, 85.06), None);
    }

    #[test]
    fn decode_and_format_match_redis() {
        let (lon, lat) = decode_score(3479099956230698.0);
        assert_eq!(fmt_human(lon), "13.36138933897018433");
        assert_eq!(fmt_human(lat), "38.11555639549629859");
        assert_eq!(fmt_human(-0.0), "0");
        assert_eq!(fmt_human(2.5), "2.5");
        assert_eq!(fmt_human(3.0), "3");
    }

    #[test]
    fn distances_match_redis() {
        // GEODIST Sicily Palermo Catania -> "166274.1516"
        let (a, b) = (
            decode_score(3479099956230698.0),
            decode_score(3479447370796909.0),
        );
        let d = distance(a.0, a.1, b.0, b.1);
        assert_eq!(fmt_distance(d), "166274.1516");
        assert_eq!(fmt_distance(d / 1000.0), "166.2742");
    }

    #[test]
    fn geohash_strings_match_redis() {
        let s = geohash_string(3479099956230698.0).unwrap();
        assert_eq!(&s, b"sqc8b49rny0");
        let s = geohash_string(3479447370796909.0).unwrap();
        assert_eq!(&s, b"sqdtr74hyu0");
    }

    #[test]
    fn neighbours_move_one_cell() {
        let h = encode_wgs84(13.0, 38.0, 10).unwrap();
        let e = moved(h, 1, 0);
        let w = moved(e, -1, 0);
        assert_eq!(w, h);
        let (a, b) = (decode(h), decode(e));
        assert!((a.lon.max - b.lon.min).abs() < 1e-9);
        let n = moved(h, 0, 1);
        assert!((decode(n).lat.min - a.lat.max).abs() < 1e-9);
    }

    #[test]
    fn steps_and_cells() {
        assert_eq!(estimate_steps(0.0, 0.0), 26);
        assert_eq!(estimate_steps(1e9, 0.0), 1);
        assert!(estimate_steps(1000.0, 70.0) < estimate_steps(1000.0, 10.0));
        let s = Shape {
            lon: 15.0,
            lat: 37.0,
            conversion: 1000.0,
            kind: ShapeKind::Radius(200.0),
        };
        let cells = search_cells(&s);
        assert!(!cells.is_empty() && cells.len() <= 9);
        // Every point within the radius falls in one of the cells.
        for (lon, lat) in [(13.361389, 38.115556), (15.087269, 37.502669)] {
            let sc = score_of(lon, lat).unwrap() as f64;
            assert!(cells.iter().any(|c| {
                let (lo, hi) = c.score_range();
                sc >= lo && sc < hi
            }));
        }
    }

    #[test]
    fn box_filter() {
        let s = Shape {
            lon: 15.0,
            lat: 37.0,
            conversion: 1000.0,
            kind: ShapeKind::Box {
                width: 400.0,
                height: 400.0,
            },
        };
        assert!(distance_if_within(&s, 13.361389, 38.115556).is_some());
        assert!(distance_if_within(&s, 10.0, 38.0).is_none());
    }

    #[test]
    fn score_casts_like_x86() {
        assert_eq!(score_bits(5.0), 5);
        assert_eq!(score_bits(-1.0), u64::MAX);
        assert_eq!(score_bits(f64::NAN), 1 << 63);
    }
}
