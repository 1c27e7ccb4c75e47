//! Membership rows x a table by subset sums (the "method of four Russians").
//!
//! A table layer's output for a coalition is `base + sum over present channels of T[c]`, a 0/1
//! row times the table. Split the channels into groups of [`BITS`]; for each group, the sum of
//! every subset of its table rows is built once per example, and a coalition then costs one add
//! per group (`channels / BITS` adds per output) whatever its size, instead of one per present
//! channel (table adds) or one multiply-add per channel (a GEMM, which also packs the table).
//! The sums are built a block of columns at a time, so they stay in L2 while every row of the
//! work item reads them.
//!
//! The values depend only on the table, the grouping and the membership: not on how many rows
//! are summed together or how the columns are blocked, so they do not depend on how a request
//! is split into work items.

/// Channels per group: 16 subsets per group. With the build shared by a chain of 32 rows this is
/// the cheapest grouping (`groups * (1 + 2^BITS / 32)` adds per output) for any channel count.
pub const BITS: usize = 4;

const SUBSETS: usize = 1 << BITS;

/// Floats of subset sums held at once (256 KiB: an L2's worth).
const SCRATCH_FLOATS: usize = 64 << 10;

/// Rows of one group of channels to sum: row `k` writes `base + sum of its members' table rows`
/// at `out[dst[k]..][..block]`.
pub struct SubsetRows<'a> {
    /// `[channels, block]`.
    pub table: &'a [f32],
    pub channels: usize,
    pub block: usize,
    /// `[block]`.
    pub base: &'a [f32],
    /// Per row, its subset index in each group (`[rows, groups(channels)]`).
    pub index: &'a [u8],
    /// Per row, where its block starts in `out`.
    pub dst: &'a [usize],
}

/// Groups of [`BITS`] channels (the last may be smaller).
pub fn groups(channels: usize) -> usize {
    channels.div_ceil(BITS)
}

/// The subset index of each group for one membership row (`present(c)` for `c < channels`),
/// appended to `index`.
pub fn push_index(channels: usize, present: impl Fn(usize) -> bool, index: &mut Vec<u8>) {
    for g in 0..groups(channels) {
        let width = BITS.min(channels - g * BITS);
        let bits = (0..width).fold(0u8, |acc, b| acc | (u8::from(present(g * BITS + b)) << b));
        index.push(bits);
    }
}

impl SubsetRows<'_> {
    /// Write every row into `out`.
    pub fn sum_into(&self, out: &mut [f32]) {
        assert_eq!(self.table.len(), self.channels * self.block, "table size");
        assert_eq!(self.base.len(), self.block, "base size");
        assert_eq!(
            self.index.len(),
            self.dst.len() * groups(self.channels),
            "one index per row and group"
        );
        assert!(
            self.dst.iter().all(|&d| d + self.block <= out.len()),
            "rows within the output"
        );
        // Outputs accumulated in registers at a time: the widest the CPU holds in its vector
        // registers that pads the block by at most an eighth (a linear layer's 10 outputs
        // take one chunk of 16, not one of 128).
        let fits =
            |l: usize| l == 16 || self.block.next_multiple_of(l) - self.block <= self.block / 8;
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the features the function is compiled for.
                return unsafe { self.sum_avx512(out, fits) };
            }
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: as above.
                return unsafe { self.sum_avx2(out, fits) };
            }
        }
        if fits(32) {
            self.sum::<32>(out)
        } else {
            self.sum::<16>(out)
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn sum_avx512(&self, out: &mut [f32], fits: impl Fn(usize) -> bool) {
        match () {
            _ if fits(128) => self.sum::<128>(out),
            _ if fits(64) => self.sum::<64>(out),
            _ if fits(32) => self.sum::<32>(out),
            _ => self.sum::<16>(out),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn sum_avx2(&self, out: &mut [f32], fits: impl Fn(usize) -> bool) {
        match () {
            _ if fits(64) => self.sum::<64>(out),
            _ if fits(32) => self.sum::<32>(out),
            _ => self.sum::<16>(out),
        }
    }

    /// The work, with `L` outputs accumulated in registers at a time. Column blocks are
    /// multiples of `L` wide; the last one's sums are padded with zeros and only its real
    /// columns are stored.
    #[inline(always)]
    fn sum<const L: usize>(&self, out: &mut [f32]) {
        let (channels, block) = (self.channels, self.block);
        let groups = groups(channels);
        if block == 0 {
            return;
        }
        if groups == 0 {
            for &d in self.dst {
                out[d..][..block].copy_from_slice(self.base);
            }
            return;
        }
        let per_column = groups * SUBSETS;
        let width = ((SCRATCH_FLOATS / per_column).max(L) / L * L).min(block.next_multiple_of(L));
        let mut sums = crate::pool::take_dirty(per_column * width);
        for j0 in (0..block).step_by(width) {
            let w = width.min(block - j0);
            let padded = w.next_multiple_of(L);
            self.build(j0, w, padded, &mut sums);
            for (k, &d) in self.dst.iter().enumerate() {
                let ids = &self.index[k * groups..][..groups];
                let row = &mut out[d + j0..][..w];
                for at in (0..padded).step_by(L) {
                    let real = L.min(w - at);
                    let mut acc = [0.0f32; L];
                    acc[..real].copy_from_slice(&self.base[j0 + at..][..real]);
                    for (g, &id) in ids.iter().enumerate() {
                        let entry = (g * SUBSETS + id as usize) * padded + at;
                        let e: &[f32; L] = sums[entry..][..L].try_into().expect("L floats");
                        for i in 0..L {
                            acc[i] += e[i];
                        }
                    }
                    row[at..at + real].copy_from_slice(&acc[..real]);
                }
            }
        }
        crate::pool::give(sums);
    }

    /// Subset sums of columns `j0..j0 + w`, at row stride `padded` (the columns past `w` are
    /// zero): `sums[(g * SUBSETS + s) * padded + j]`, each subset the one without its lowest
    /// member plus that member's row (so 1 add per subset and column).
    #[inline(always)]
    fn build(&self, j0: usize, w: usize, padded: usize, sums: &mut [f32]) {
        for g in 0..groups(self.channels) {
            let group = &mut sums[g * SUBSETS * padded..][..SUBSETS * padded];
            group[..padded].fill(0.0);
            let members = BITS.min(self.channels - g * BITS);
            for s in 1..1usize << members {
                let low = s.trailing_zeros() as usize;
                let table_row = &self.table[(g * BITS + low) * self.block + j0..][..w];
                let (done, rest) = group.split_at_mut(s * padded);
                let without = &done[(s & (s - 1)) * padded..][..w];
                for ((d, a), b) in rest[..w].iter_mut().zip(without).zip(table_row) {
                    *d = a + b;
                }
                rest[w..padded].fill(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    /// Every row equals base + its members' rows summed directly (f64), for channel counts that
    /// leave a partial group, blocks that leave a partial register chunk and a partial column
    /// block, and rows written anywhere in the output.
    #[test]
    fn subset_sums_equal_the_direct_sum() {
        let mut seed = 7;
        for (channels, block) in [
            (1, 5),
            (4, 64),
            (7, 130),
            (32, 10),
            (16, 257),
            (33, 1000),
            (64, 4100),
        ] {
            let table: Vec<f32> = (0..channels * block).map(|_| lcg(&mut seed)).collect();
            let base: Vec<f32> = (0..block).map(|_| lcg(&mut seed)).collect();
            let rows = 9;
            let members: Vec<Vec<bool>> = (0..rows)
                .map(|r| {
                    (0..channels)
                        .map(|_| match r {
                            0 => false,
                            1 => true,
                            _ => lcg(&mut seed) > 0.0,
                        })
                        .collect()
                })
                .collect();
            let mut index = Vec::new();
            for m in &members {
                push_index(channels, |c| m[c], &mut index);
            }
            // Rows in reverse order with a gap, to check `dst` is honoured.
            let dst: Vec<usize> = (0..rows)
                .map(|r| (rows - 1 - r) * (block + 3) + 1)
                .collect();
            let mut out = vec![f32::NAN; rows * (block + 3) + 1];
            SubsetRows {
                table: &table,
                channels,
                block,
                base: &base,
                index: &index,
                dst: &dst,
            }
            .sum_into(&mut out);
            for (r, m) in members.iter().enumerate() {
                for j in 0..block {
                    let want = base[j] as f64
                        + (0..channels)
                            .filter(|&c| m[c])
                            .map(|c| table[c * block + j] as f64)
                            .sum::<f64>();
                    let got = out[dst[r] + j] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "channels {channels} block {block} row {r} col {j}: {got} vs {want}"
                    );
                }
            }
        }
    }

    /// The portable kernel and the vectorised ones give the same bits (the same adds in the
    /// same order), so values do not depend on the machine's vector width.
    #[test]
    fn every_register_width_gives_the_same_bits() {
        let mut seed = 3;
        let (channels, block) = (21, 777);
        let table: Vec<f32> = (0..channels * block).map(|_| lcg(&mut seed)).collect();
        let base: Vec<f32> = (0..block).map(|_| lcg(&mut seed)).collect();
        let mut index = Vec::new();
        for _ in 0..5 {
            let m: Vec<bool> = (0..channels).map(|_| lcg(&mut seed) > 0.0).collect();
            push_index(channels, |c| m[c], &mut index);
        }
        let dst: Vec<usize> = (0..5).map(|r| r * block).collect();
        let rows = SubsetRows {
            table: &table,
            channels,
            block,
            base: &base,
            index: &index,
            dst: &dst,
        };
        let run = |f: &dyn Fn(&mut [f32])| {
            let mut out = vec![0.0f32; 5 * block];
            f(&mut out);
            out
        };
        let scalar = run(&|o| rows.sum::<1>(o));
        assert_eq!(run(&|o| rows.sum_into(o)), scalar);
        assert_eq!(run(&|o| rows.sum::<16>(o)), scalar);
        assert_eq!(run(&|o| rows.sum::<32>(o)), scalar);
        assert_eq!(run(&|o| rows.sum::<64>(o)), scalar);
        assert_eq!(run(&|o| rows.sum::<128>(o)), scalar);
    }
}
