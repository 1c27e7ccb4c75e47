"""Torchvision Inception-v3 with all 17,216 conv filters as players, end to end (docs/zoo.md).

    python python/examples/inception_all_filters.py      # writes inception_cal/, evali_cal1.safetensors
    nshap run --model inception_cal/model.json --weights inception_cal/weights.safetensors \
        --data evali_cal1.safetensors --players filters --metric neg_loss --budget 34434 --out inc

Random init (no weights are downloaded), 75x75 (Inception's minimum input), BatchNorm calibrated
on random inputs so the random network's logits stay moderate; the labels are the network's own
predictions, so the full network's accuracy is 1.
"""
import torch, torchvision
from safetensors.torch import save_file
from nshap_export import export
torch.manual_seed(0)
m = torchvision.models.inception_v3(weights=None, init_weights=True, aux_logits=False)
# calibrate BatchNorm on random inputs (cumulative averages) so the random network's logits stay
# moderate, as the zoo does
for mod in m.modules():
    if isinstance(mod, torch.nn.BatchNorm2d):
        mod.reset_running_stats(); mod.momentum = None
g = torch.Generator().manual_seed(1)
x = torch.randn(4, 3, 75, 75, generator=g)
m.train()
with torch.no_grad():
    for _ in range(8):
        m(torch.cat([x, torch.randn(12, 3, 75, 75)]))
m.eval()
with torch.no_grad():
    logits = m(x)
labels = logits.argmax(1)
print("logit range", float(logits.min()), float(logits.max()))
export(m, x[:1], "inception_cal")
save_file({"inputs": x[:1].contiguous(), "labels": labels[:1].contiguous()}, "evali_cal1.safetensors")
