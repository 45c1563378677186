"""hf_logits.py: an exported checkpoint, loaded by Hugging Face transformers
as LlamaForCausalLM, gives the token probabilities vgen gives.

  hf_logits.py HF_DIR CONFIDENCE.jsonl PROMPT [DTYPE [loose]]

vgen ran on PROMPT with --confidence, writing for each generated token its
id, the probability p the model gave it and the entropy H (bits) of the
whole distribution.  Here the same sequence (<bos>, the prompt encoded by
HF_DIR/tokenizer.json, the generated ids) goes through transformers in one
forward pass; for each generated token p and H must agree, within what
DTYPE (float32 or bfloat16, the precision transformers runs in) allows, or
bf16's tolerance with `loose` (an INT8 model, which vgen runs with its INT8
kernels and the export holds dequantised in bf16).  Prints TAP.
"""
import json
import math
import sys

import torch
from tokenizers import Tokenizer
from transformers import LlamaForCausalLM

hf_dir, conf, prompt = sys.argv[1:4]
dtype = sys.argv[4] if len(sys.argv) > 4 else "float32"
loose = len(sys.argv) > 5 and sys.argv[5] == "loose"
BOS = 1
# bf16 keeps 8 bits of mantissa; across a few layers the probabilities move
# by a few parts in a hundred.  fp32 against vgen's fp32 is far tighter.
TOL_P, TOL_H = (0.05, 0.10) if dtype == "bfloat16" or loose else (2e-3, 5e-3)

n = 0
def ok(cond, desc):
    global n
    n += 1
    print(("ok %d - " if cond else "not ok %d - ") % n + desc)
    return cond

dev = "cuda" if torch.cuda.is_available() else "cpu"
model = LlamaForCausalLM.from_pretrained(hf_dir, dtype=getattr(torch, dtype)).to(dev)
model.eval()
ok(True, f"transformers loads {hf_dir} as LlamaForCausalLM ({dtype}, {dev})")
tok = Tokenizer.from_file(f"{hf_dir}/tokenizer.json")
ids = [BOS] + tok.encode(prompt, add_special_tokens=False).ids
gen = [json.loads(l) for l in open(conf, encoding="utf-8")]
gen = [g for g in gen if g.get("type") == "token"]
ok(len(gen) > 0, f"vgen generated {len(gen)} tokens")
seq = ids + [g["id"] for g in gen]
with torch.no_grad():
    logits = model(torch.tensor([seq], device=dev)).logits[0].float()
vocab_used = len(tok.get_vocab())
logits = logits[:, :vocab_used]
logp = torch.log_softmax(logits, dim=-1)
worst_p = worst_h = 0.0
argmax_same = 0
for k, g in enumerate(gen):
    row = logp[len(ids) - 1 + k]
    p = math.exp(row[g["id"]].item())
    h = -(row.exp() * row).sum().item() / math.log(2)
    worst_p = max(worst_p, abs(p - g["p"]))
    worst_h = max(worst_h, abs(h - g["entropy"]))
    # Greedy vgen took its own argmax; in bf16 a near-tie may fall the
    # other way, so there the chosen token need only be within TOL_P of
    # transformers' best.
    best = math.exp(row.max().item())
    argmax_same += int(row.argmax().item() == g["id"] or
                       ((dtype == "bfloat16" or loose) and p >= best - TOL_P))
ok(worst_p <= TOL_P, f"p of every token within {TOL_P} (worst {worst_p:.2e})")
ok(worst_h <= TOL_H, f"entropy within {TOL_H} bits (worst {worst_h:.2e})")
ok(argmax_same == len(gen),
   f"greedy vgen tokens are transformers' argmax{' or a near-tie' if dtype == 'bfloat16' or loose else ''} "
   f"({argmax_same}/{len(gen)})")
print(f"1..{n}")
