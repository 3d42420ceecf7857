//! Distinct devices, counted in fixed memory: a HyperLogLog sketch (precision 14: 16,384
//! registers, a standard error of 1.04/√16384 ≈ 0.8 %, so 2 % is two and a half standard
//! errors), mergeable — the union of two fleets is
//! the register-wise maximum — and idempotent: adding a device twice changes nothing, so a
//! retried batch of reports never counts a device twice.
//!
//! Most sketches describe a handful of devices (one package, one hour), so a sketch starts
//! sparse — the (register, rank) pairs it has set, sorted — and becomes dense (one byte per
//! register) only when that would be smaller. Both forms serialise to bytes that any version
//! reads back: the hash and the layout are fixed here, not borrowed from the standard
//! library, whose hasher may change between Rust releases.

/// Registers: 2^14.
const P: u32 = 14;
const M: usize = 1 << P;
/// A sparse sketch turns dense past this many pairs (4 bytes each: a quarter of dense).
const SPARSE_MAX: usize = M / 16;

const FORMAT_SPARSE: u8 = 1;
const FORMAT_DENSE: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Registers {
    /// Sorted by register, one entry per register set: `register << 8 | rank`.
    Sparse(Vec<u32>),
    Dense(Box<[u8; M]>),
}

/// A HyperLogLog sketch of distinct device ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sketch {
    regs: Registers,
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch::new()
    }
}

/// Why stored bytes are not a sketch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a sketch: {0}")]
pub struct SketchError(&'static str);

/// A 64-bit hash of a device id, fixed for all time: FNV-1a over the bytes, then MurmurHash3's
/// finaliser, so that nearby ids spread over every bit.
pub fn hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Sketch {
    pub fn new() -> Sketch {
        Sketch {
            regs: Registers::Sparse(Vec::new()),
        }
    }

    /// Adds a device by its id.
    pub fn add(&mut self, device_id: &str) {
        self.add_hash(hash(device_id));
    }

    pub fn add_hash(&mut self, h: u64) {
        let register = (h >> (64 - P)) as usize;
        // The rank: the position of the first 1 in the remaining bits (1-based), at most
        // 64 - P + 1.
        let rest = h << P;
        let rank = (rest.leading_zeros().min(64 - P) + 1) as u8;
        self.set(register, rank);
    }

    fn set(&mut self, register: usize, rank: u8) {
        match &mut self.regs {
            Registers::Dense(r) => {
                if r[register] < rank {
                    r[register] = rank;
                }
            }
            Registers::Sparse(pairs) => {
                let key = (register as u32) << 8;
                match pairs.binary_search_by_key(&(register as u32), |p| p >> 8) {
                    Ok(i) => {
                        if (pairs[i] & 0xff) < u32::from(rank) {
                            pairs[i] = key | u32::from(rank);
                        }
                    }
                    Err(i) => pairs.insert(i, key | u32::from(rank)),
                }
                if pairs.len() > SPARSE_MAX {
                    self.densify();
                }
            }
        }
    }

    fn densify(&mut self) {
        if let Registers::Sparse(pairs) = &self.regs {
            let mut dense = Box::new([0u8; M]);
            for p in pairs {
                dense[(p >> 8) as usize] = (p & 0xff) as u8;
            }
            self.regs = Registers::Dense(dense);
        }
    }

    /// Adds every device `other` has seen.
    pub fn merge(&mut self, other: &Sketch) {
        match &other.regs {
            Registers::Sparse(pairs) => {
                for p in pairs {
                    self.set((p >> 8) as usize, (p & 0xff) as u8);
                }
            }
            Registers::Dense(r) => {
                self.densify();
                if let Registers::Dense(mine) = &mut self.regs {
                    for (a, b) in mine.iter_mut().zip(r.iter()) {
                        *a = (*a).max(*b);
                    }
                }
            }
        }
    }

    /// The estimated number of distinct devices.
    pub fn estimate(&self) -> f64 {
        let m = M as f64;
        let (sum, zeros) = match &self.regs {
            Registers::Sparse(pairs) => {
                let set: f64 = pairs.iter().map(|p| 2f64.powi(-((p & 0xff) as i32))).sum();
                (set + (M - pairs.len()) as f64, M - pairs.len())
            }
            Registers::Dense(r) => {
                let sum = r.iter().map(|x| 2f64.powi(-i32::from(*x))).sum();
                (sum, r.iter().filter(|x| **x == 0).count())
            }
        };
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        // Small cardinalities: linear counting over the empty registers is far more exact.
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }

    /// The estimate, rounded.
    pub fn count(&self) -> u64 {
        self.estimate().round() as u64
    }

    /// The sketch as stored: a format byte, then the sorted pairs (4 bytes each, big-endian)
    /// or the 16,384 registers.
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.regs {
            Registers::Sparse(pairs) => {
                let mut out = Vec::with_capacity(1 + 4 * pairs.len());
                out.push(FORMAT_SPARSE);
                for p in pairs {
                    out.extend_from_slice(&p.to_be_bytes());
                }
                out
            }
            Registers::Dense(r) => {
                let mut out = Vec::with_capacity(1 + M);
                out.push(FORMAT_DENSE);
                out.extend_from_slice(&r[..]);
                out
            }
        }
    }

    /// Reads a stored sketch back, refusing anything [`Sketch::to_bytes`] would not write.
    pub fn from_bytes(bytes: &[u8]) -> Result<Sketch, SketchError> {
        let max_rank = (64 - P + 1) as u8;
        match bytes.split_first() {
            Some((&FORMAT_SPARSE, rest)) => {
                if rest.len() % 4 != 0 || rest.len() / 4 > SPARSE_MAX {
                    return Err(SketchError("a sparse sketch of the wrong length"));
                }
                let pairs: Vec<u32> = rest
                    .chunks_exact(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                let ordered = pairs.windows(2).all(|w| (w[0] >> 8) < (w[1] >> 8));
                let valid = pairs.iter().all(|p| {
                    let rank = (p & 0xff) as u8;
                    (p >> 8) < M as u32 && (1..=max_rank).contains(&rank)
                });
                if !ordered || !valid {
                    return Err(SketchError("a sparse sketch out of order or range"));
                }
                Ok(Sketch {
                    regs: Registers::Sparse(pairs),
                })
            }
            Some((&FORMAT_DENSE, rest)) => {
                let regs: [u8; M] = rest
                    .try_into()
                    .map_err(|_| SketchError("a dense sketch of the wrong length"))?;
                if regs.iter().any(|r| *r > max_rank) {
                    return Err(SketchError("a register out of range"));
                }
                Ok(Sketch {
                    regs: Registers::Dense(Box::new(regs)),
                })
            }
            _ => Err(SketchError("an unknown format")),
        }
    }

    /// Bytes this sketch holds in memory (for the aggregates' memory bound).
    pub fn heap_bytes(&self) -> usize {
        match &self.regs {
            Registers::Sparse(pairs) => 4 * pairs.capacity(),
            Registers::Dense(_) => M,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(range: std::ops::Range<u64>, prefix: &str) -> Sketch {
        let mut s = Sketch::new();
        for i in range {
            s.add(&format!("{prefix}-{i}"));
        }
        s
    }

    #[test]
    fn estimates_stay_within_two_percent_from_one_device_to_a_million() {
        for n in [1u64, 10, 100, 1_000, 10_000, 100_000, 1_000_000] {
            let est = of(0..n, "device").estimate();
            let err = (est - n as f64).abs() / n as f64;
            // Small counts are exact to the device; large ones within 2 %.
            let bound = if n <= 1_000 { 0.01 } else { 0.02 };
            assert!(
                err <= bound,
                "{n}: estimated {est:.0} ({:.2}%)",
                err * 100.0
            );
        }
    }

    #[test]
    fn a_device_added_again_changes_nothing() {
        let once = of(0..500, "d");
        let mut twice = once.clone();
        for i in 0..500 {
            twice.add(&format!("d-{i}"));
        }
        assert_eq!(once, twice);
    }

    #[test]
    fn merging_two_fleets_counts_their_union_and_either_order_agrees() {
        let a = of(0..30_000, "x");
        let b = of(20_000..50_000, "x");
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        let est = ab.estimate();
        assert!((est - 50_000.0).abs() / 50_000.0 <= 0.02, "{est}");
        // A sparse sketch merged into a dense one, and the other way round.
        let small = of(0..20, "y");
        let mut big = a.clone();
        big.merge(&small);
        let mut small_first = small.clone();
        small_first.merge(&a);
        assert_eq!(big, small_first);
    }

    #[test]
    fn sketches_read_back_from_their_bytes_and_garbage_is_refused() {
        for s in [Sketch::new(), of(0..50, "s"), of(0..100_000, "s")] {
            assert_eq!(Sketch::from_bytes(&s.to_bytes()), Ok(s));
        }
        assert!(Sketch::from_bytes(&[]).is_err());
        assert!(Sketch::from_bytes(&[9]).is_err());
        assert!(Sketch::from_bytes(&[FORMAT_SPARSE, 0, 0, 1]).is_err());
        // Pairs out of order, or a rank past the largest possible.
        let mut unordered = vec![FORMAT_SPARSE];
        unordered.extend_from_slice(&((5u32 << 8) | 1).to_be_bytes());
        unordered.extend_from_slice(&((2u32 << 8) | 1).to_be_bytes());
        assert!(Sketch::from_bytes(&unordered).is_err());
        let mut dense = vec![FORMAT_DENSE];
        dense.extend_from_slice(&[0u8; M]);
        dense[1] = 200;
        assert!(Sketch::from_bytes(&dense).is_err());
    }

    #[test]
    fn a_sketch_of_few_devices_stays_small() {
        let s = of(0..10, "few");
        assert_eq!(s.to_bytes().len(), 1 + 4 * 10);
        assert!(of(0..10_000, "many").to_bytes().len() == 1 + M);
    }

    #[test]
    fn the_hash_is_fixed_for_all_time() {
        // Stored sketches from every version must merge: these values never change.
        assert_eq!(hash(""), 0xefd0_1f60_ba99_2926);
        assert_eq!(hash("device-1"), 0xe340_ac1c_4190_ad44);
        assert_eq!(hash("phone-42"), 0xf4c7_d1b4_ec8a_04a7);
    }
}
