"""Check Vesper's safetensors files with the reference `safetensors` package.

  st_check.py read FILE [REF]   FILE opens in safetensors (which validates
      the header and offsets itself); every tensor decodes; BF16 tensors,
      which numpy cannot hold, are decoded from their bytes; with REF (an
      fp32 file of the same tensors) each value is REF's rounded to bf16.
  st_check.py write FILE        write a small file with safetensors.numpy
      (F32, F16, I8, I32 and metadata) for vckpt to read.
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


if __name__ == "__main__":
    if sys.argv[1] == "read":
        read(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    else:
        write(sys.argv[2])
