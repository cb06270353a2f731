"""Writes a sharded PyTorch checkpoint of the shared tiny-bert fixture:
pytorch_model-00001-of-00002.bin, pytorch_model-00002-of-00002.bin and
pytorch_model.bin.index.json, laid out as transformers' save_pretrained does
(weight_map from tensor name to shard file). Run with Debian's python3-torch:

    /usr/bin/python3 tests/testdata/sharded/generate.py

The test (tests/hash/sharded_test.ts) reads the committed files: CI needs no Python.
"""
import json
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "..", "..", "..", "shared", "fixtures", "tiny-bert", "pytorch_model.bin")

state = torch.load(SOURCE, weights_only=True)
names = sorted(state)
half = len(names) // 2
parts = [names[:half], names[half:]]
weight_map = {}
for i, part in enumerate(parts, start=1):
    shard = f"pytorch_model-{i:05d}-of-{len(parts):05d}.bin"
    torch.save({n: state[n] for n in part}, os.path.join(HERE, shard))
    for n in part:
        weight_map[n] = shard
total = sum(t.numel() * t.element_size() for t in state.values())
with open(os.path.join(HERE, "pytorch_model.bin.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
    f.write("\n")
# What torch.load reads back from the shards, for the test.
back = {}
for shard in sorted(set(weight_map.values())):
    back.update(torch.load(os.path.join(HERE, shard), weights_only=True))
assert sorted(back) == names and all(torch.equal(back[n], state[n]) for n in names)
print("wrote", len(parts), "shards of", len(names), "tensors")
