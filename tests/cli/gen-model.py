#!/usr/bin/env python3
"""gen-model.py: small VesperLM checkpoints whose behaviour the vgen tests
know in advance.  Standard library only (no numpy, no safetensors).

  gen-model.py chain OUT VOCAB_USED [TOKENIZER]
      A model that, after any token outside CHAIN, writes CHAIN byte by byte
      and then <eos>, each step with probability ~1.  The embedding puts
      chain token k on axis k and every other token on one more axis; the
      head maps axis k to chain token k+1, so the output depends on the
      last token only.  The blocks hold small random weights so that every
      path of the forward pass runs without changing the answer.
  gen-model.py random OUT VOCAB_USED [TOKENIZER]
      Random weights: a flat, uncertain distribution, for tests of sampling.
  gen-model.py nan OUT VOCAB_USED [TOKENIZER]
      The chain model with a NaN in its output head.

TOKENIZER, when given, has its SHA-256 recorded in vesper.tokenizer."""
import hashlib
import json
import math
import random
import struct
import sys

CHAIN = "Oui. Zéphyr!".encode()   # every byte distinct: a function of the last
BYTE0 = 70                        # token id of byte 0 (lib/tok.h)
EOS = 2


def main():
    kind, out, vocab_used = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tok = sys.argv[4] if len(sys.argv) > 4 else None
    cfg = {"vocab": (vocab_used + 127) // 128 * 128, "vocab_used": vocab_used,
           "dim": 64, "layers": 2, "heads": 4, "kv_heads": 2, "hidden": 96,
           "ctx": 128, "act": "silu", "era_gamma": 0.5, "era_temp": 1.0,
           "tie": False, "norm_eps": 1e-5, "rope_theta": 10000.0}
    V, C, F, L = cfg["vocab"], cfg["dim"], cfg["hidden"], cfg["layers"]
    hd = C // cfg["heads"]
    kv = cfg["kv_heads"] * hd
    rng = random.Random(7)

    def rand(n, scale):
        return [rng.gauss(0, scale) for _ in range(n)]

    small = 0.01 if kind in ("chain", "nan") else 0.3 / math.sqrt(C)
    tensors = []
    if kind in ("chain", "nan"):
        ids = [BYTE0 + b for b in CHAIN]
        other = len(ids)
        emb = [0.0] * (V * C)
        head = [0.0] * (V * C)
        for t in range(V):
            emb[t * C + (ids.index(t) if t in ids else other)] = 1.0
        for k, t in enumerate(ids):
            nxt = ids[k + 1] if k + 1 < len(ids) else EOS
            head[nxt * C + k] = 4.0
        head[ids[0] * C + other] = 4.0
        if kind == "nan":
            head[5 * C + 3] = float("nan")
    else:
        emb = rand(V * C, 1.0)
        head = rand(V * C, 0.5 / math.sqrt(C))
    tensors.append(("model.embed_tokens.weight", [V, C], emb))
    for layer in range(L):
        p = "model.layers.%d." % layer
        tensors += [
            (p + "input_layernorm.weight", [C], [1.0] * C),
            (p + "self_attn.q_proj.weight", [C, C], rand(C * C, small)),
            (p + "self_attn.k_proj.weight", [kv, C], rand(kv * C, small)),
            (p + "self_attn.v_proj.weight", [kv, C], rand(kv * C, small)),
            (p + "self_attn.o_proj.weight", [C, C], rand(C * C, small)),
            (p + "post_attention_layernorm.weight", [C], [1.0] * C),
            (p + "mlp.gate_proj.weight", [F, C], rand(F * C, small)),
            (p + "mlp.up_proj.weight", [F, C], rand(F * C, small)),
            (p + "mlp.down_proj.weight", [C, F], rand(C * F, small)),
        ]
    tensors.append(("model.norm.weight", [C], [1.0] * C))
    tensors.append(("lm_head.weight", [V, C], head))

    sha = ""
    if tok:
        with open(tok, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
    header = {"__metadata__": {
        "format": "vesper", "vesper.step": "0", "vesper.tokenizer": sha,
        "vesper.config": json.dumps(cfg, separators=(",", ":"),
                                    sort_keys=True)}}
    off = 0
    for name, shape, data in tensors:
        header[name] = {"dtype": "F32", "shape": shape,
                        "data_offsets": [off, off + 4 * len(data)]}
        off += 4 * len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, data in tensors:
            f.write(struct.pack("<%df" % len(data), *data))


main()
