//! The WGSL kernels: which files make up each kernel, and the pipelines built from them.
//!
//! Every kernel is `params.wgsl` + (for producing kernels) `epilogue.wgsl` + its own file, with a
//! one-line header choosing the storage type `store_t` (f32, or f16 with `enable f16;`).
//! Sources are embedded with `include_str!`, so the binary needs no shader files at run time.

mod pipelines;

pub(crate) use pipelines::Pipelines;

use crate::options::Precision;

const PARAMS: &str = include_str!("../../../../shaders/params.wgsl");
const EPILOGUE: &str = include_str!("../../../../shaders/epilogue.wgsl");

/// One compute kernel (one pipeline per kernel and precision).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kernel {
    Linear,
    Conv2d,
    Affine,
    Map,
    Add,
    Mul,
    ChannelCopy,
    LayerNorm,
    Pool2d,
    GlobalAvgPool,
    TableSum,
    Metric,
}

impl Kernel {
    pub const ALL: [Kernel; 12] = [
        Kernel::Linear,
        Kernel::Conv2d,
        Kernel::Affine,
        Kernel::Map,
        Kernel::Add,
        Kernel::Mul,
        Kernel::ChannelCopy,
        Kernel::LayerNorm,
        Kernel::Pool2d,
        Kernel::GlobalAvgPool,
        Kernel::TableSum,
        Kernel::Metric,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Linear => "linear",
            Kernel::Conv2d => "conv2d",
            Kernel::Affine => "affine",
            Kernel::Map => "map",
            Kernel::Add => "add",
            Kernel::Mul => "mul",
            Kernel::ChannelCopy => "channel_copy",
            Kernel::LayerNorm => "layernorm",
            Kernel::Pool2d => "pool2d",
            Kernel::GlobalAvgPool => "global_avgpool",
            Kernel::TableSum => "table_sum",
            Kernel::Metric => "metric",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Kernel::Linear => include_str!("../../../../shaders/linear.wgsl"),
            Kernel::Conv2d => include_str!("../../../../shaders/conv2d.wgsl"),
            Kernel::Affine => include_str!("../../../../shaders/affine.wgsl"),
            Kernel::Map => include_str!("../../../../shaders/map.wgsl"),
            Kernel::Add => include_str!("../../../../shaders/add.wgsl"),
            Kernel::Mul => include_str!("../../../../shaders/mul.wgsl"),
            Kernel::ChannelCopy => include_str!("../../../../shaders/channel_copy.wgsl"),
            Kernel::LayerNorm => include_str!("../../../../shaders/layernorm.wgsl"),
            Kernel::Pool2d => include_str!("../../../../shaders/pool2d.wgsl"),
            Kernel::GlobalAvgPool => include_str!("../../../../shaders/global_avgpool.wgsl"),
            Kernel::TableSum => include_str!("../../../../shaders/table_sum.wgsl"),
            Kernel::Metric => include_str!("../../../../shaders/metric.wgsl"),
        }
    }

    /// Whether the kernel writes a node's output (and so applies the activation/mask epilogue).
    fn has_epilogue(self) -> bool {
        self != Kernel::Metric
    }

    /// The complete WGSL source for `precision`.
    pub fn source(self, precision: Precision) -> String {
        let header = match precision {
            Precision::F32 => "alias store_t = f32;\n",
            Precision::F16 => "enable f16;\nalias store_t = f16;\n",
        };
        let mut source = String::from(header);
        source.push_str(PARAMS);
        if self.has_epilogue() {
            source.push_str(EPILOGUE);
        }
        source.push_str(self.body());
        source
    }
}

/// Parse and validate a kernel with naga (what wgpu does at pipeline creation), without a device.
pub fn validate(kernel: Kernel, precision: Precision) -> Result<(), String> {
    validate_source(&kernel.source(precision))
        .map_err(|e| format!("{} ({precision:?}): {e}", kernel.name()))
}

fn validate_source(source: &str) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| e.emit_to_string(source))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_validates_in_f32_and_f16() {
        for kernel in Kernel::ALL {
            for precision in [Precision::F32, Precision::F16] {
                if let Err(e) = validate(kernel, precision) {
                    panic!("{e}");
                }
            }
        }
    }

    #[test]
    fn every_shader_file_belongs_to_a_kernel() {
        // A new .wgsl file must be listed in Kernel::ALL, or the test above would not see it.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shaders");
        let mut covered = 0;
        for entry in std::fs::read_dir(&dir).expect("shaders/") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("readable");
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let used =
                text == PARAMS || text == EPILOGUE || Kernel::ALL.iter().any(|k| k.body() == text);
            assert!(used, "{name} is not part of any Kernel");
            covered += 1;
        }
        assert_eq!(
            covered,
            Kernel::ALL.len() + 2,
            "params + epilogue + one file per kernel"
        );
    }

    #[test]
    fn a_broken_kernel_is_rejected() {
        // The validator must catch type errors, or the test above proves nothing.
        let good =
            format!("alias store_t = f32;\n{PARAMS}\nfn f() -> u32 {{ return params.rows + 1u; }}");
        assert_eq!(validate_source(&good), Ok(()));
        let bad = format!("alias store_t = f32;\n{PARAMS}\nfn f() -> u32 {{ let x: f32 = 1.5; return params.rows + x; }}");
        assert!(validate_source(&bad).is_err(), "u32 + f32 must be rejected");
    }
}
