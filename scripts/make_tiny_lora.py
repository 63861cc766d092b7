"""Create a small random LoRA adapter (PEFT layout) for the tiny Llama of make_tiny_model.py.

Used by the real-vLLM LoRA test: vLLM loads it with `--enable-lora --lora-modules NAME=DIR` and
logs each request's `lora_request`. Rank 8 on q_proj and v_proj of both layers, fully offline.
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file

out = sys.argv[1] if len(sys.argv) > 1 else ".tools/tiny-lora"
model = sys.argv[2] if len(sys.argv) > 2 else ".tools/tiny-llama"
os.makedirs(out, exist_ok=True)
with open(os.path.join(model, "config.json")) as f:
    cfg = json.load(f)
hidden, rank = cfg["hidden_size"], 8
q_out = cfg["num_attention_heads"] * cfg["head_dim"]
v_out = cfg["num_key_value_heads"] * cfg["head_dim"]
g = torch.Generator().manual_seed(0)
tensors = {}
for layer in range(cfg["num_hidden_layers"]):
    for proj, width in (("q_proj", q_out), ("v_proj", v_out)):
        base = f"base_model.model.model.layers.{layer}.self_attn.{proj}"
        tensors[base + ".lora_A.weight"] = (torch.randn(rank, hidden, generator=g) * 0.01).to(torch.bfloat16)
        tensors[base + ".lora_B.weight"] = (torch.randn(width, rank, generator=g) * 0.01).to(torch.bfloat16)
save_file(tensors, os.path.join(out, "adapter_model.safetensors"))
with open(os.path.join(out, "adapter_config.json"), "w") as f:
    json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 16, "lora_dropout": 0.0,
               "bias": "none", "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": "tiny-llama",
               "fan_in_fan_out": False, "inference_mode": True, "modules_to_save": None, "use_rslora": False,
               "use_dora": False}, f)
