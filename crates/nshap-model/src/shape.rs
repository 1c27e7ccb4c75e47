//! Activation shapes of one example (no batch dimension).

use serde::Serialize;
use std::fmt;

/// The shape of one example's activation at a node.
///
/// Memory layout is PyTorch's: an `Image` is `[C, H, W]` contiguous, a `Features` is `[F]`.
/// A *channel* is the unit a player removes: `C` for images, each feature for vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Shape {
    Features(usize),
    Image { c: usize, h: usize, w: usize },
}

impl Shape {
    /// Build from a spec's `input` list: `[F]` or `[C, H, W]`.
    pub fn from_dims(dims: &[usize]) -> Option<Shape> {
        match *dims {
            [f] if f > 0 => Some(Shape::Features(f)),
            [c, h, w] if c > 0 && h > 0 && w > 0 => Some(Shape::Image { c, h, w }),
            _ => None,
        }
    }

    /// Number of channels (features for vectors).
    pub fn channels(&self) -> usize {
        match *self {
            Shape::Features(f) => f,
            Shape::Image { c, .. } => c,
        }
    }

    /// Elements per channel: `H * W` for images, 1 for vectors.
    pub fn spatial(&self) -> usize {
        match *self {
            Shape::Features(_) => 1,
            Shape::Image { h, w, .. } => h * w,
        }
    }

    /// Elements per example.
    pub fn numel(&self) -> usize {
        self.channels() * self.spatial()
    }

    /// Dimensions as a list, as in the spec.
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Shape::Features(f) => vec![f],
            Shape::Image { c, h, w } => vec![c, h, w],
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Shape::Features(n) => write!(f, "[{n}]"),
            Shape::Image { c, h, w } => write!(f, "[{c}, {h}, {w}]"),
        }
    }
}
