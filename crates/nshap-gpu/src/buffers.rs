//! Device buffers: grow-only pools reused across batches, and weight uploads.

use crate::options::Precision;
use wgpu::util::DeviceExt;

/// A buffer that is reallocated only when a request needs more than it holds, so steady-state
/// batches allocate nothing. `ensure` reports growth so bind groups can be rebuilt.
pub(crate) struct GrowBuffer {
    label: &'static str,
    usage: wgpu::BufferUsages,
    buffer: Option<wgpu::Buffer>,
}

impl GrowBuffer {
    pub fn new(label: &'static str, usage: wgpu::BufferUsages) -> GrowBuffer {
        GrowBuffer {
            label,
            usage,
            buffer: None,
        }
    }

    /// Make room for `bytes`; true when the buffer was (re)created.
    pub fn ensure(&mut self, device: &wgpu::Device, bytes: u64) -> bool {
        let bytes = bytes.max(4).next_multiple_of(4);
        if self.buffer.as_ref().is_some_and(|b| b.size() >= bytes) {
            return false;
        }
        self.buffer = Some(device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(self.label),
            size: bytes,
            usage: self.usage,
            mapped_at_creation: false,
        }));
        true
    }

    pub fn get(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("ensure() is called before use")
    }
}

/// Values in the storage precision, as bytes padded to a multiple of 4.
pub(crate) fn store_bytes(values: &[f32], precision: Precision) -> Vec<u8> {
    let mut bytes = match precision {
        Precision::F32 => bytemuck::cast_slice(values).to_vec(),
        Precision::F16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
    };
    let padded = bytes.len().max(4).next_multiple_of(4);
    bytes.resize(padded, 0);
    bytes
}

/// Stored values back to f32 (read-back of logits).
pub(crate) fn load_values(bytes: &[u8], count: usize, precision: Precision) -> Vec<f32> {
    match precision {
        Precision::F32 => bytes[..count * 4]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Precision::F16 => bytes[..count * 2]
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    }
}

/// A read-only storage buffer holding `values` in the storage precision.
pub(crate) fn upload_store(
    device: &wgpu::Device,
    label: &str,
    values: &[f32],
    precision: Precision,
) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: &store_bytes(values, precision),
        usage: wgpu::BufferUsages::STORAGE,
    })
}

/// A read-only storage buffer of f32 (biases, scales, baselines: always f32).
pub(crate) fn upload_f32(device: &wgpu::Device, label: &str, values: &[f32]) -> wgpu::Buffer {
    upload_store(device, label, values, Precision::F32)
}

/// `[out, in]` (PyTorch linear) to `[in, out]`, so neighbouring threads read neighbouring weights.
pub(crate) fn transpose_linear(weight: &[f32], out: usize, inp: usize) -> Vec<f32> {
    let mut t = vec![0.0; weight.len()];
    for o in 0..out {
        for k in 0..inp {
            t[k * out + o] = weight[o * inp + k];
        }
    }
    t
}

/// `[groups][out/groups][K]` (PyTorch conv, K = in/groups x kh x kw) to `[groups][K][out/groups]`.
pub(crate) fn transpose_conv(weight: &[f32], out: usize, groups: usize) -> Vec<f32> {
    let per_group_out = out / groups;
    let k_len = weight.len() / out;
    let mut t = vec![0.0; weight.len()];
    for g in 0..groups {
        for oc in 0..per_group_out {
            for k in 0..k_len {
                t[(g * k_len + k) * per_group_out + oc] =
                    weight[(g * per_group_out + oc) * k_len + k];
            }
        }
    }
    t
}
