//! CRC-64/Jones as Redis's crc64.c computes it (reflected, polynomial 0xad93d23594c935a9,
//! init 0, no final xor): the checksum at the end of every RDB file. Slicing by 8 bytes, as
//! Redis's crcspeed, so checking a file costs little next to parsing it. Pure code, any
//! thread.

/// The reflected Jones polynomial.
const POLY: u64 = 0x95ac_9329_ac4b_c9b5;

const fn tables() -> [[u64; 256]; 8] {
    let mut t = [[0u64; 256]; 8];
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
    while s < 8 {
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

static T: [[u64; 256]; 8] = tables();

/// Continues `crc` over `data` (start with 0).
pub fn update(mut crc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        crc ^= u64::from_le_bytes(w);
        crc = T[7][(crc & 0xff) as usize]
            ^ T[6][((crc >> 8) & 0xff) as usize]
            ^ T[5][((crc >> 16) & 0xff) as usize]
            ^ T[4][((crc >> 24) & 0xff) as usize]
            ^ T[3][((crc >> 32) & 0xff) as usize]
            ^ T[2][((crc >> 40) & 0xff) as usize]
            ^ T[1][((crc >> 48) & 0xff) as usize]
            ^ T[0][(crc >> 56) as usize];
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
    fn incremental_equals_whole() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for cut in [0, 1, 7, 8, 9, 500, 999, 1000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(update(update(0, a), b), update(0, &data));
        }
    }
}
