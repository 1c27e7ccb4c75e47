"""Factories for the CLI tests (``nshap-export tests/models.py:make_bad ...``)."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        y = y - 1.0  # unsupported: sub
        return F.gelu(y, approximate="tanh")  # unsupported: tanh gelu


class Bad(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = Block()
        self.up = nn.Upsample(scale_factor=2)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        x = self.block(self.stem(x))
        x = self.up(x)  # unsupported: upsample
        x = x * 2.0  # unsupported: mul by a Python scalar
        x = x.mean((2, 3))
        return torch.softmax(self.fc(x), 1)  # unsupported: softmax


class Good(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Tuple(Good):
    def forward(self, x):
        y = super().forward(x)
        return y, y.sum(1)


class Flaky(nn.Module):
    """Computes something different on every call: the traced graph disagrees with the first call."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(12, 3)
        self.b = nn.Linear(12, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        x = torch.flatten(x, 1)
        return self.a(x) if self.calls == 1 else self.b(x)


def make_bad():
    return Bad()


def make_good():
    torch.manual_seed(0)
    return Good()


def make_tuple():
    return Tuple()


def make_flaky():
    return Flaky()


def make_not_a_module():
    return 42


class NoExport(Good):
    """torch.export refuses it (it raises under fake tensors); torch.fx traces it."""

    def forward(self, x):
        from torch._subclasses.fake_tensor import FakeTensor

        if isinstance(x, FakeTensor):
            raise RuntimeError("this model does not like torch.export")
        return super().forward(x)


def make_no_export():
    torch.manual_seed(0)
    return NoExport()
