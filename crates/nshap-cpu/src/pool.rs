//! A per-thread pool of `f32` buffers for the dependent stage's node outputs.
//!
//! Each work item allocates one output per dependent node; at the sizes of a conv layer over
//! dozens of coalition-examples those are megabytes, which the allocator hands back to the OS
//! and faults in again on the next item. Reusing them keeps the pages mapped.
//!
//! A pooled buffer keeps every value it ever held: one lent for a short request comes back at
//! its full length, so a later long request takes it without zeroing anything. (When a short
//! request simply shortened a large buffer, the next item's `resize` refilled it with zeros: 6%
//! of the time of a conv block's items whose example counts differ.)

use std::cell::RefCell;

/// Buffers kept per thread; more are simply freed.
const MAX_POOLED: usize = 16;

/// Lent buffers remembered per thread (a buffer dropped instead of given back is forgotten
/// when more are lent).
const MAX_LENT: usize = 64;

thread_local! {
    /// Idle buffers, each at the length of the values it holds.
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    /// Buffers lent shorter than the values they hold: (address, capacity, values held).
    static LENT: RefCell<Vec<(usize, usize, usize)>> = const { RefCell::new(Vec::new()) };
}

/// A zeroed buffer of `len` values, reusing a pooled allocation when one is big enough.
pub fn take_zeroed(len: usize) -> Vec<f32> {
    let mut v = take_dirty(len);
    v.fill(0.0);
    v
}

/// A buffer of `len` values holding whatever a previous user left, for a caller that writes
/// every value (a pass of zeroing less).
pub fn take_dirty(len: usize) -> Vec<f32> {
    match reuse(len) {
        Some(mut v) => {
            let held = v.len();
            if held > len {
                LENT.with(|lent| {
                    let mut lent = lent.borrow_mut();
                    if lent.len() == MAX_LENT {
                        lent.remove(0);
                    }
                    lent.push((v.as_ptr() as usize, v.capacity(), held));
                });
                v.truncate(len);
            } else {
                v.resize(len, 0.0);
            }
            v
        }
        None => vec![0.0; len],
    }
}

/// The pooled buffer that fits `len` best: one holding exactly `len` values (work items repeat
/// the same sizes), else the shortest one holding at least `len` values (lending it writes
/// nothing), else the one with the most values (the fewest to zero).
fn reuse(len: usize) -> Option<Vec<f32>> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let holding = pool
            .iter()
            .enumerate()
            .filter(|(_, v)| v.len() >= len)
            .min_by_key(|(_, v)| (v.len() != len, v.len()))
            .map(|(i, _)| i);
        let best = holding.or_else(|| {
            pool.iter()
                .enumerate()
                .max_by_key(|(_, v)| v.len())
                .map(|(i, _)| i)
        });
        best.map(|i| pool.swap_remove(i))
    })
}

/// Hand a buffer back for reuse on this thread.
pub fn give(mut v: Vec<f32>) {
    if v.capacity() == 0 {
        return;
    }
    let key = (v.as_ptr() as usize, v.capacity());
    let held = LENT.with(|lent| {
        let mut lent = lent.borrow_mut();
        let at = lent.iter().position(|&(p, c, _)| (p, c) == key)?;
        Some(lent.swap_remove(at).2)
    });
    if let Some(held) = held.filter(|&h| h > v.len() && h <= v.capacity()) {
        // SAFETY: this allocation (same address and capacity as when it was lent) held `held`
        // initialised values when `take_dirty` shortened it; shortening a `Vec<f32>` and writing
        // within its length never de-initialise memory, and `f32` has no invalid bit patterns.
        unsafe { v.set_len(held) };
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < MAX_POOLED {
            pool.push(v);
        } else if let Some(smallest) = pool
            .iter_mut()
            .min_by_key(|b| b.capacity())
            .filter(|b| b.capacity() < v.capacity())
        {
            *smallest = v;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A large buffer lent for a short request comes back whole: a later long request gets it
    /// without a new allocation, holding the values it had.
    #[test]
    fn a_buffer_lent_short_comes_back_whole() {
        let mut big = take_dirty(1000);
        big.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
        let addr = big.as_ptr();
        give(big);
        let short = take_dirty(10);
        assert_eq!(short.as_ptr(), addr);
        give(short);
        let again = take_dirty(1000);
        assert_eq!(again.as_ptr(), addr);
        assert_eq!(again[999], 999.0);
        give(again);
        let zeroed = take_zeroed(1000);
        assert!(zeroed.iter().all(|&v| v == 0.0));
    }
}
