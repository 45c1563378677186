"""Check Vesper's safetensors files with the reference `safetensors` package.

  st_check.py read FILE [REF]   FILE opens in safetensors (which validates
      the header and offsets itself); every tensor decodes; BF16 tensors,
      which numpy cannot hold, are decoded from their bytes; with REF (an
      fp32 file of the same tensors) each value is REF's rounded to bf16.
  st_check.py write FILE        write a small file with safetensors.numpy
      (F32, F16, I8, I32 and metadata) for vckpt to read.
  st_check.py hfmodel DIR       write a small Hugging Face Llama model as
      transformers saves one (config.json, model.safetensors in F16,
      grouped-query attention, a tied head, a vocabulary of 1000 that is
      not a multiple of 128, tensors in another order).
  st_check.py hfcheck DIR FILE  FILE, `vckpt import --hf DIR`'s output, holds
      DIR's weights as F32, the embedding padded with zero rows.
"""
import json
import struct
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return n, json.loads(f.read(n))


def bf16_of(path, name, hdr, hlen):
    """A BF16 tensor's values as float32, read from its bytes."""
    info = hdr[name]
    b, e = info["data_offsets"]
    with open(path, "rb") as f:
        f.seek(8 + hlen + b)
        raw = np.frombuffer(f.read(e - b), dtype="<u2")
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(info["shape"])


def round_bf16(x):
    """fp32 -> bf16 -> fp32 with round to nearest even (no NaN here)."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return (u.astype(np.uint32) << 16).view(np.float32)


def read(path, ref=None):
    hlen, hdr = header(path)
    assert (8 + hlen) % 8 == 0, "data not 8-byte aligned"
    f = safe_open(path, framework="np")
    meta = f.metadata() or {}
    keys = list(f.keys())
    assert keys, "no tensors"
    r = safe_open(ref, framework="np") if ref else None
    checked = 0
    for k in keys:
        dt = hdr[k]["dtype"]
        x = bf16_of(path, k, hdr, hlen) if dt == "BF16" else f.get_tensor(k)
        assert list(x.shape) == hdr[k]["shape"], k
        if r is not None and k in r.keys():
            want = r.get_tensor(k)
            if dt == "BF16":
                want = round_bf16(want)
            assert np.array_equal(x, want), f"{k}: values differ from {ref}"
            checked += 1
    print(f"{path}: {len(keys)} tensors, metadata {sorted(meta)}, {checked} compared")


def write(path):
    rng = np.random.default_rng(7)
    t = {
        "w": rng.standard_normal((3, 5)).astype(np.float32),
        "h": rng.standard_normal((4,)).astype(np.float16),
        "q": np.arange(-4, 4, dtype=np.int8),
        "i": np.array([1, -2, 3], dtype=np.int32),
    }
    save_file(t, path, metadata={"format": "np", "note": "from python"})
    np.save(path + ".w.npy", t["w"])


def hfmodel(d):
    C, L, H, KV, F, V = 64, 2, 4, 2, 160, 1000
    hd = C // H
    rng = np.random.default_rng(11)
    def m(r, c):
        return (rng.standard_normal((r, c)) * 0.05).astype(np.float16)
    t = {"model.embed_tokens.weight": m(V, C), "model.norm.weight": np.ones(C, np.float16)}
    for l in range(L):
        p = f"model.layers.{l}."
        t[p + "self_attn.q_proj.weight"] = m(H * hd, C)
        t[p + "self_attn.k_proj.weight"] = m(KV * hd, C)
        t[p + "self_attn.v_proj.weight"] = m(KV * hd, C)
        t[p + "self_attn.o_proj.weight"] = m(C, H * hd)
        t[p + "mlp.gate_proj.weight"] = m(F, C)
        t[p + "mlp.up_proj.weight"] = m(F, C)
        t[p + "mlp.down_proj.weight"] = m(C, F)
        t[p + "input_layernorm.weight"] = (1 + rng.standard_normal(C) * 0.1).astype(np.float16)
        t[p + "post_attention_layernorm.weight"] = (1 + rng.standard_normal(C) * 0.1).astype(np.float16)
    save_file(t, f"{d}/model.safetensors", metadata={"format": "pt"})
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V,
           "hidden_size": C, "intermediate_size": F, "num_hidden_layers": L,
           "num_attention_heads": H, "num_key_value_heads": KV, "hidden_act": "silu",
           "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 500000.0,
           "tie_word_embeddings": True, "torch_dtype": "float16", "rope_scaling": None}
    with open(f"{d}/config.json", "w") as f:
        json.dump(cfg, f, indent=2)


def hfcheck(d, path):
    src = safe_open(f"{d}/model.safetensors", framework="np")
    out = safe_open(path, framework="np")
    cfg = json.loads(out.metadata()["vesper.config"])
    assert cfg["vocab"] == 1024 and cfg["vocab_used"] == 1000, cfg
    assert cfg["kv_heads"] == 2 and cfg["heads"] == 4 and cfg["tie"], cfg
    assert abs(cfg["rope_theta"] - 500000) < 1 and abs(cfg["norm_eps"] - 1e-6) < 1e-9, cfg
    assert "lm_head.weight" not in out.keys()
    for k in src.keys():
        a = src.get_tensor(k).astype(np.float32)
        b = out.get_tensor(k)
        assert b.dtype == np.float32, k
        if k == "model.embed_tokens.weight":
            assert b.shape == (1024, 64) and not b[1000:].any(), "padding rows"
            b = b[:1000]
        assert np.array_equal(a, b), k
    assert len(list(out.keys())) == len(list(src.keys()))
    print(f"{path}: {len(list(src.keys()))} tensors equal to {d}'s")


if __name__ == "__main__":
    if sys.argv[1] == "read":
        read(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    elif sys.argv[1] == "hfmodel":
        hfmodel(sys.argv[2])
    elif sys.argv[1] == "hfcheck":
        hfcheck(sys.argv[2], sys.argv[3])
    else:
        write(sys.argv[2])
