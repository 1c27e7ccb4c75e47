"""Exceptions raised by the exporter."""

from __future__ import annotations


class ExportError(Exception):
    """The model cannot be exported (tracing failed, bad output, bad arguments)."""


class UnsupportedOps(ExportError):
    """One or more nodes of the traced graph have no nshap equivalent.

    ``problems`` lists every one of them (a ``Problem`` each), not just the first.
    """

    def __init__(self, problems, method=None):
        self.problems = list(problems)
        self.method = method
        head = f"{len(self.problems)} unsupported operation(s)"
        if method:
            head += f" (traced with {method})"
        lines = [head + ":"] + ["  " + p.format() for p in self.problems]
        super().__init__("\n".join(lines))


class CheckFailed(ExportError):
    """The emitted spec, interpreted in PyTorch, does not reproduce the module's output."""

    def __init__(self, message, max_abs_diff=None, tolerance=None, first_bad_node=None):
        self.max_abs_diff = max_abs_diff
        self.tolerance = tolerance
        self.first_bad_node = first_bad_node
        super().__init__(message)


class Problem:
    """One unsupported node: the op, the module it was called in, the source line, why."""

    __slots__ = ("op", "module", "source", "reason")

    def __init__(self, op, module, source, reason):
        self.op = op
        self.module = module
        self.source = source
        self.reason = reason

    def format(self):
        where = f"in module '{self.module}'" if self.module else "at top level"
        src = f" ({self.source})" if self.source else ""
        return f"{self.op} {where}{src}: {self.reason}"

    def as_dict(self):
        return {"op": self.op, "module": self.module, "source": self.source, "reason": self.reason}

    def __repr__(self):
        return f"Problem({self.format()!r})"
