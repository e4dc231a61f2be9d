//! Key → slot → shard: `slot = CRC16(key or its {hash tag}) & 16383` (the Redis Cluster
//! function) and `shard = slot % shards`. The one routing function everyone uses.

/// Number of hash slots, as in Redis Cluster.
pub const SLOTS: u16 = 16384;

const fn crc16_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut j = 0;
        while j < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            j += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static CRC16: [u16; 256] = crc16_table();

/// `CRC16_HI[x]` is the CRC of byte `x` followed by one zero byte: with it two input bytes
/// take two independent lookups instead of a chain of two (slicing-by-2).
const fn crc16_table_hi(t: &[u16; 256]) -> [u16; 256] {
    let mut hi = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let c = t[i];
        hi[i] = (c << 8) ^ t[(c >> 8) as usize];
        i += 1;
    }
    hi
}

static CRC16_HI: [u16; 256] = crc16_table_hi(&crc16_table());

/// CRC16-CCITT (XMODEM), as in Redis's crc16.c, two bytes per step.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    let mut pairs = data.chunks_exact(2);
    for p in &mut pairs {
        let (hi, lo) = ((crc >> 8) as u8, crc as u8);
        crc = CRC16_HI[(hi ^ p[0]) as usize] ^ CRC16[(lo ^ p[1]) as usize];
    }
    for &b in pairs.remainder() {
        crc = (crc << 8) ^ CRC16[(((crc >> 8) as u8) ^ b) as usize];
    }
    crc
}

/// The part of a key that is hashed: the contents of the first `{...}` if non-empty.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = memchr::memchr(b'{', key) {
        if let Some(len) = memchr::memchr(b'}', &key[open + 1..]) {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// Cluster hash slot of `key`.
pub fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) & (SLOTS - 1)
}

/// The shard that owns `key` among `shards` shards.
#[inline]
pub fn shard_of(key: &[u8], shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    slot(key) as usize % shards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_redis_cluster_slots() {
        // Values from `CLUSTER KEYSLOT` on redis-server.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"a{b}c{d}"), b"b");
    }

    #[test]
    fn two_byte_steps_match_the_bytewise_crc() {
        let bytewise = |d: &[u8]| {
            d.iter().fold(0u16, |crc, &b| {
                (crc << 8) ^ CRC16[(((crc >> 8) as u8) ^ b) as usize]
            })
        };
        let data: Vec<u8> = (0..300u32).map(|i| (i * 131 + 7) as u8).collect();
        for len in 0..data.len() {
            assert_eq!(crc16(&data[..len]), bytewise(&data[..len]), "len {len}");
        }
    }

    #[test]
    fn one_shard_owns_everything() {
        assert_eq!(shard_of(b"anything", 1), 0);
        assert!(shard_of(b"foo", 4) < 4);
    }
}
