"""nshap_export: export PyTorch classifiers to nshap's ``nshap.model.v1`` spec.

    from nshap_export import export
    res = export(model, torch.randn(3, 224, 224), "out/resnet18")
    # out/resnet18/model.json, weights.safetensors, export.json

See ``docs/model-format.md`` for the format and ``python/README.md`` for the mapping.
"""

from .api import ExportResult, export, self_check
from .errors import CheckFailed, ExportError, Problem, UnsupportedOps
from .interpret import interpret, load_spec, node_shapes

__all__ = [
    "export",
    "ExportResult",
    "self_check",
    "interpret",
    "load_spec",
    "node_shapes",
    "ExportError",
    "UnsupportedOps",
    "CheckFailed",
    "Problem",
]

__version__ = "0.1.0"
