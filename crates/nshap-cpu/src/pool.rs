//! A per-thread pool of `f32` buffers for the dependent stage's node outputs.
//!
//! Each work item allocates one output per dependent node; at the sizes of a conv layer over
//! dozens of coalition-examples those are megabytes, which the allocator hands back to the OS
//! and faults in again on the next item. Reusing them keeps the pages mapped.

use std::cell::RefCell;

/// Buffers kept per thread; more are simply freed.
const MAX_POOLED: usize = 16;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
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
            v.truncate(len);
            v.resize(len, 0.0);
            v
        }
        None => vec![0.0; len],
    }
}

fn reuse(len: usize) -> Option<Vec<f32>> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        best.map(|i| pool.swap_remove(i))
    })
}

/// Hand a buffer back for reuse on this thread.
pub fn give(v: Vec<f32>) {
    if v.capacity() == 0 {
        return;
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
