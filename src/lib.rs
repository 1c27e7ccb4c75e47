//! nshap
