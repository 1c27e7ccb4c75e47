//! Fully connected layer as one GEMM over all rows.

use nshap_model::Linear;

/// `out[rows, out] = input[rows, in] * W^T + b`.
pub fn linear(l: &Linear, input: &[f32], rows: usize, out: &mut [f32]) {
    let (k, n) = (l.in_features, l.out_features);
    for row in out.chunks_exact_mut(n) {
        row.copy_from_slice(&l.bias);
    }
    // SAFETY: the slices hold rows*k, n*k and rows*n values; strides describe them exactly
    // (W is [n, k] row-major, read transposed).
    unsafe {
        matrixmultiply::sgemm(
            rows,
            k,
            n,
            1.0,
            input.as_ptr(),
            k as isize,
            1,
            l.weight.as_ptr(),
            1,
            k as isize,
            1.0,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}
