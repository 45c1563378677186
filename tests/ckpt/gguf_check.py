"""Check a `vckpt export --gguf` file with llama.cpp's own reader (gguf-py).

  gguf_check.py FILE.gguf CKPT.safetensors TYPE [TOKENIZER.json]

The reader parses the file; the llama.* keys must be the checkpoint's
configuration; every tensor, dequantised by gguf-py, must match the
checkpoint's (q and k rows permuted as convert_hf_to_gguf.py does) within
the error of TYPE; llama.cpp's rope (adjacent pairs) on the exported q and
k must give the attention scores Vesper's rope (pairs (i, i + hd/2)) gives
on the originals; with a tokenizer, the tokens must be its vocabulary.
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors import safe_open

NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
TOL = {"f16": 1e-3, "q8_0": 0.01, "q4_0": 0.15}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".", 3)
    return f"blk.{parts[2]}.{NAMES[parts[3]]}"


def permute(w, heads):
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def field(r, key):
    f = r.fields[key]
    return f.contents()


def main():
    path, ckpt, qtype = sys.argv[1:4]
    r = GGUFReader(path)
    st = safe_open(ckpt, framework="np")
    cfg = json.loads(st.metadata()["vesper.config"])
    assert field(r, "general.architecture") == "llama"
    want = {
        "llama.block_count": cfg["layers"], "llama.embedding_length": cfg["dim"],
        "llama.feed_forward_length": cfg["hidden"], "llama.context_length": cfg["ctx"],
        "llama.attention.head_count": cfg["heads"],
        "llama.attention.head_count_kv": cfg["kv_heads"],
        "llama.rope.dimension_count": cfg["dim"] // cfg["heads"],
    }
    for k, v in want.items():
        assert field(r, k) == v, f"{k}: {field(r, k)} != {v}"
    assert abs(field(r, "llama.rope.freq_base") - cfg["rope_theta"]) < 1e-3
    tensors = {t.name: t for t in r.tensors}
    names = [k for k in st.keys()]
    assert len(tensors) == len(names), f"{len(tensors)} GGUF tensors, {len(names)} in the checkpoint"
    worst = 0.0
    for hf in names:
        t = tensors[gguf_name(hf)]
        ref = st.get_tensor(hf)
        x = dequantize(t.data, t.tensor_type).reshape(ref.shape)
        if "q_proj" in hf:
            ref = permute(ref, cfg["heads"])
        elif "k_proj" in hf:
            ref = permute(ref, cfg["kv_heads"])
        e = float(np.sqrt(((x - ref) ** 2).sum() / (ref ** 2).sum()))
        worst = max(worst, e)
        assert e < TOL[qtype], f"{hf}: relative RMS {e} over {TOL[qtype]}"
        if ref.ndim == 2 and qtype != "f16" and ref.shape[1] % 32 == 0:
            assert t.tensor_type.name == qtype.upper(), f"{hf} is {t.tensor_type.name}"
    # The permutation is right if llama.cpp's rope (adjacent pairs) on the
    # exported q and k gives the attention scores that Vesper's rope (pairs
    # (i, i + hd/2)) gives on the originals.
    hd, theta = cfg["dim"] // cfg["heads"], cfg["rope_theta"]
    freq = theta ** (-np.arange(hd // 2) * 2.0 / hd)

    def rope_half(v, pos):
        c, s = np.cos(pos * freq), np.sin(pos * freq)
        a, b = v[: hd // 2], v[hd // 2:]
        return np.concatenate([a * c - b * s, a * s + b * c])

    def rope_adjacent(v, pos):
        c, s = np.cos(pos * freq), np.sin(pos * freq)
        a, b = v[0::2], v[1::2]
        out = np.empty_like(v)
        out[0::2], out[1::2] = a * c - b * s, a * s + b * c
        return out

    x = np.random.default_rng(5).standard_normal(cfg["dim"])
    wq, wk = st.get_tensor("model.layers.0.self_attn.q_proj.weight"), st.get_tensor("model.layers.0.self_attn.k_proj.weight")
    gq = dequantize(tensors["blk.0.attn_q.weight"].data, tensors["blk.0.attn_q.weight"].tensor_type).reshape(wq.shape)
    gk = dequantize(tensors["blk.0.attn_k.weight"].data, tensors["blk.0.attn_k.weight"].tensor_type).reshape(wk.shape)
    worst_s = 0.0
    for h in range(cfg["heads"]):
        kvh = h // (cfg["heads"] // cfg["kv_heads"])
        q, k = wq[h * hd:(h + 1) * hd] @ x, wk[kvh * hd:(kvh + 1) * hd] @ x
        q2, k2 = gq[h * hd:(h + 1) * hd] @ x, gk[kvh * hd:(kvh + 1) * hd] @ x
        for pq, pk in ((5, 2), (37, 0), (100, 99)):
            s1 = rope_half(q, pq) @ rope_half(k, pk)
            s2 = rope_adjacent(q2, pq) @ rope_adjacent(k2, pk)
            worst_s = max(worst_s, abs(s1 - s2) / (np.linalg.norm(q) * np.linalg.norm(k)))
    assert worst_s < 3 * TOL[qtype], f"attention scores differ by {worst_s} (relative)"
    if len(sys.argv) > 4:
        tok = json.load(open(sys.argv[4], encoding="utf-8"))
        toks = field(r, "tokenizer.ggml.tokens")
        assert len(toks) == cfg["vocab"], f"{len(toks)} tokens for vocab {cfg['vocab']}"
        for s, i in tok["model"]["vocab"].items():
            assert toks[i] == s, f"token {i}: {toks[i]!r} != {s!r}"
        merges = field(r, "tokenizer.ggml.merges")
        assert len(merges) == len(tok["model"]["merges"])
    print(f"{path}: {len(tensors)} tensors ({qtype}), worst relative RMS {worst:.5f}, "
          f"rope scores agree to {worst_s:.2e}")


main()
