#!/bin/bash
# The GPU backend's fast paths against its plain plan, side by side on whatever adapter
# `nshap bench --backend gpu` opens (lavapipe in CI machines), on the five models of
# benches/pytorch/suffixes.py. Prints one JSON line per measurement; docs/gpu.md has the table.
#
#   python benches/pytorch/suffixes.py --export /tmp/suffix-models
#   benches/gpu_fast_paths.sh /tmp/suffix-models > /tmp/gpu_fast_paths.jsonl
set -euo pipefail
models=${1:?usage: $0 DIR (from suffixes.py --export)}
nshap=${NSHAP:-target/release/nshap}
rounds=${ROUNDS:-3}
for line in "digits-cnn relu2 200 100" "mnist-cnn relu2 64 16" "resnet-inner layer2.0.relu1 32 8" \
            "resnet-strided layer1.0.relu2 32 8" "resnet18-32 layer1.0.relu_1 16 4"; do
  set -- $line
  name=$1 player=$2 m=$3 b=$4 d=$models/$1
  for walks in "" "--walks"; do
    for round in $(seq "$rounds"); do
      for plain in "" "--plain"; do
        "$nshap" bench --backend gpu --model "$d/model.json" --weights "$d/weights.safetensors" \
          --data "$d/eval.safetensors" --players "$player" --name "$name" --coalitions "$m" \
          --examples "$b" --reps 3 --json $walks $plain 2>/dev/null |
          sed "s/^/{\"walks\":\"$walks\",\"round\":$round,\"r\":/; s/\$/}/"
      done
    done
  done
done
