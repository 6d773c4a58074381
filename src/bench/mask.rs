//! Masking keys for the bench's client frames (the frame codec itself is the library's
//! `frame`, through `wschat::internals::frame`).

/// A cheap xorshift generator for masking keys.
///
/// RFC 6455 asks for unpredictable masks to protect intermediaries from cache poisoning by
/// scripted clients; a load generator on loopback talks to no intermediary, and a CSPRNG call per
/// frame would be a measurable share of the client's budget.
pub struct MaskRng(u64);

impl MaskRng {
    /// A generator seeded with `seed` (zero is replaced: xorshift would stay at zero).
    pub fn new(seed: u64) -> Self {
        MaskRng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next masking key.
    pub fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x as u32).to_ne_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_vary_and_a_zero_seed_does_not_stick() {
        let mut rng = MaskRng::new(0);
        let keys: Vec<[u8; 4]> = (0..4).map(|_| rng.next_mask()).collect();
        assert!(keys.iter().all(|k| *k != [0; 4]));
        assert!(keys.windows(2).all(|w| w[0] != w[1]));
    }
}
