//! The FNV-1a 64-bit digest the kit uses to check that a body arrived whole
//! and unchanged: a one-shot [`digest`] and a streaming [`Digest`] that give
//! the same value however the bytes are split into chunks.

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// Returns the FNV-1a 64-bit digest of `bytes`.
pub fn digest(bytes: &[u8]) -> u64 {
    let mut d = Digest::new();
    d.update(bytes);
    d.finish()
}

/// A streaming FNV-1a 64-bit hasher: feeding a body chunk by chunk gives the
/// same result as [`digest`] over the whole body.
#[derive(Debug, Clone)]
pub struct Digest {
    state: u64,
}

impl Digest {
    /// Starts a digest of zero bytes.
    pub fn new() -> Digest {
        Digest {
            state: OFFSET_BASIS,
        }
    }

    /// Adds `bytes` to the digest.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.state ^= u64::from(b);
            self.state = self.state.wrapping_mul(PRIME);
        }
    }

    /// Returns the digest of all bytes added so far.
    pub fn finish(&self) -> u64 {
        self.state
    }
}

impl Default for Digest {
    fn default() -> Digest {
        Digest::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(digest(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(digest(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(digest(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn chunked_equals_whole() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for split in [1, 7, 100, 4096] {
            let mut d = Digest::new();
            for chunk in data.chunks(split) {
                d.update(chunk);
            }
            assert_eq!(d.finish(), digest(&data), "split {split}");
        }
    }
}
