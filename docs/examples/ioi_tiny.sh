#!/usr/bin/env bash
# The worked example of docs/transformers.md: IOI prompts with ABC counterfactuals for the random
# 6-layer, 8-head GPT-2 of tests/fixtures/gpt2-6x8, then a certified top-5 of its 48 heads on
# logit_diff with resample ablation, and the per-layer figure. The model is random (no hub is
# reachable here), so the values show the workflow, not a circuit.
# Needs: a Python with the package installed (pip install './python[lm]'), nshap built.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
NSHAP=${NSHAP:-target/release/nshap}
OUT=${OUT:-target/ioi-tiny}
mkdir -p "$OUT"

# A word-level tokenizer over the two store/park templates and 12 names (GPT-2's byte-level
# pre-tokenizer, so " Mary" is one token): 64 ids at most, the model's vocabulary.
"$PY" - "$OUT/tokenizer.json" <<'PYEOF'
import sys
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
from nshap_export.lm_data import IOI_TEMPLATES
names = "Mary John Alice Bob Tom Sarah Anna Paul Kate Mark Emma Adam".split()
pt = pre_tokenizers.ByteLevel(add_prefix_space=False)
vocab = {"[PAD]": 0, "[UNK]": 1}
for t in IOI_TEMPLATES[:2]:
    for a in names:
        for w, _ in pt.pre_tokenize_str(t.format(A=a, B=a)):
            vocab.setdefault(w, len(vocab))
assert len(vocab) <= 64, len(vocab)
tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
tok.pre_tokenizer = pt
tok.decoder = decoders.ByteLevel()
tok.save(sys.argv[1])
PYEOF

"$PY" -m nshap_export.lm_data --tokenizer "$OUT/tokenizer.json" --ioi \
    --names Mary,John,Alice,Bob,Tom,Sarah,Anna,Paul,Kate,Mark,Emma,Adam \
    --template "When {A} and {B} went to the store, {B} gave a drink to" \
    --template "When {B} and {A} went to the park, {B} gave a ball to" \
    --n 32 --seed 0 --out "$OUT/ioi.safetensors"

"$NSHAP" run --hf tests/fixtures/gpt2-6x8 --data "$OUT/ioi.safetensors" \
    --players 'transformer.h.*.attn.heads' --metric logit_diff --baseline resample \
    --method tmab --top-k 5 --seed 0 --out "$OUT/run"
"$NSHAP" report "$OUT/run"
