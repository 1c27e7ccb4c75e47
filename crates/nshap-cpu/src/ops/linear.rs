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

/// Vector-Jacobian product of [`linear`] with respect to its input (the weights are constants):
/// `grad_in[rows, in] += grad_out[rows, out] * W`, accumulated into `grad_in`.
pub fn linear_backward(l: &Linear, grad_out: &[f32], rows: usize, grad_in: &mut [f32]) {
    let (k, n) = (l.in_features, l.out_features);
    debug_assert_eq!(grad_out.len(), rows * n);
    debug_assert_eq!(grad_in.len(), rows * k);
    // SAFETY: grad_out is [rows, n], W is [n, k] and grad_in is [rows, k], all row-major with
    // exactly these sizes.
    unsafe {
        matrixmultiply::sgemm(
            rows,
            n,
            k,
            1.0,
            grad_out.as_ptr(),
            n as isize,
            1,
            l.weight.as_ptr(),
            k as isize,
            1,
            1.0,
            grad_in.as_mut_ptr(),
            k as isize,
            1,
        );
    }
}
