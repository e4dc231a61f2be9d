//! CRC-64/Jones as Redis's crc64.c computes it (reflected, polynomial 0xad93d23594c935a9,
//! init 0, no final xor): the checksum at the end of every RDB file. Slicing by 16 bytes
//! (Redis's crcspeed slices by 8), so checking a file costs little next to parsing it: the
//! check runs on a thread of its own beside the load, and on two cores it competes with it.
//! Pure code, any thread.

/// The reflected Jones polynomial.
const POLY: u64 = 0x95ac_9329_ac4b_c9b5;

const fn tables() -> [[u64; 256]; 16] {
    let mut t = [[0u64; 256]; 16];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut k = 0;
        while k < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            k += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut s = 1;
    while s < 16 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = t[0][(prev & 0xff) as usize] ^ (prev >> 8);
            i += 1;
        }
        s += 1;
    }
    t
}

static T: [[u64; 256]; 16] = tables();

/// Continues `crc` over `data` (start with 0).
pub fn update(mut crc: u64, data: &[u8]) -> u64 {
    let t = |i: usize, x: u64| T[i][(x & 0xff) as usize];
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        let (lo8, hi8) = c.split_at(8);
        let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
        a.copy_from_slice(lo8);
        b.copy_from_slice(hi8);
        let lo = crc ^ u64::from_le_bytes(a);
        let hi = u64::from_le_bytes(b);
        crc = t(15, lo)
            ^ t(14, lo >> 8)
            ^ t(13, lo >> 16)
            ^ t(12, lo >> 24)
            ^ t(11, lo >> 32)
            ^ t(10, lo >> 40)
            ^ t(9, lo >> 48)
            ^ t(8, lo >> 56)
            ^ t(7, hi)
            ^ t(6, hi >> 8)
            ^ t(5, hi >> 16)
            ^ t(4, hi >> 24)
            ^ t(3, hi >> 32)
            ^ t(2, hi >> 40)
            ^ t(1, hi >> 48)
            ^ t(0, hi >> 56);
    }
    for &b in chunks.remainder() {
        crc = T[0][((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_as_redis() {
        // crc64.c's own test vector.
        assert_eq!(update(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn sliced_equals_bytewise() {
        // One table, one byte at a time: the definition the sliced loop must match.
        let data: Vec<u8> = (0..4099u32).map(|i| (i * 131 + 7) as u8).collect();
        let mut want = 0u64;
        for &b in &data {
            want = T[0][((want ^ u64::from(b)) & 0xff) as usize] ^ (want >> 8);
        }
        assert_eq!(update(0, &data), want);
    }

    #[test]
    fn incremental_equals_whole() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for cut in [0, 1, 7, 8, 9, 15, 16, 17, 500, 999, 1000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(update(update(0, a), b), update(0, &data));
        }
    }
}
