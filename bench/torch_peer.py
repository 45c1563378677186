#!/usr/bin/env python3
"""torch_peer.py: the PyTorch peer of Vesper's CUDA trainer.

The same VesperLM (Llama layout: RMSNorm, rotary "rotate_half", causal
attention, gated SiLU MLP, untied head) written the way a PyTorch user
would: torch.compile, bf16 autocast, scaled_dot_product_attention (flash),
torch.optim.AdamW(fused=True), gradient clipping at 1.0.  Parameters carry
the Hugging Face names, so the initial weights it writes (safetensors, F32)
load into bench/gpu_bench by name.

  torch_peer.py train --preset medium --batch 64 --seq 1024 --steps 20 \\
      --init init.safetensors --tokens tok.bin
      writes the initial weights and a batch of tokens, then trains on that
      batch, printing each step's loss (gpu_bench, given the same files,
      must print the same losses) and the time a step takes.
  torch_peer.py adamw --preset medium --steps 200
      times optimizer.step() alone over the model's parameters.

Never used by the programs themselves: a benchmark peer.
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {  # C, L, H, F, T, tie (lib/vlm_config.c)
    "tiny": (128, 4, 4, 352, 256, False),
    "small": (320, 8, 5, 864, 512, True),
    "medium": (768, 12, 12, 2048, 1024, False),
    "large": (1024, 24, 16, 2816, 2048, False),
}
PEAK = 989e12


class RMSNorm(nn.Module):
    def __init__(self, c, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.eps = eps

    def forward(self, x):  # in fp32, as the CUDA backend's norm
        x = x.float()
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Attention(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h, self.hd = h, c // h
        self.q_proj = nn.Linear(c, c, bias=False)
        self.k_proj = nn.Linear(c, c, bias=False)
        self.v_proj = nn.Linear(c, c, bias=False)
        self.o_proj = nn.Linear(c, c, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.h, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.h, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.h, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin).to(v.dtype), rope(k, cos, sin).to(v.dtype)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, c, f):
        super().__init__()
        self.gate_proj = nn.Linear(c, f, bias=False)
        self.up_proj = nn.Linear(c, f, bias=False)
        self.down_proj = nn.Linear(f, c, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, c, h, f, eps):
        super().__init__()
        self.input_layernorm = RMSNorm(c, eps)
        self.self_attn = Attention(c, h)
        self.post_attention_layernorm = RMSNorm(c, eps)
        self.mlp = MLP(c, f)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class VesperLM(nn.Module):
    def __init__(self, preset, vocab=32000, eps=1e-5, theta=10000.0):
        super().__init__()
        C, L, H, Fw, T, tie = PRESETS[preset]
        assert not tie, "the peer has untied heads only"
        self.cfg = (C, L, H, Fw, T, vocab)
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(vocab, C)
        self.model.layers = nn.ModuleList(Block(C, H, Fw, eps) for _ in range(L))
        self.model.norm = RMSNorm(C, eps)
        self.lm_head = nn.Linear(C, vocab, bias=False)
        hd = C // H
        freq = theta ** (-torch.arange(0, hd // 2, dtype=torch.float64) * 2 / hd)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)

    def forward(self, idx, targets):
        T = idx.shape[1]
        cos, sin = self.cos[:T], self.sin[:T]
        x = self.model.embed_tokens(idx)
        for blk in self.model.layers:
            x = blk(x, cos, sin)
        logits = self.lm_head(self.model.norm(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]),
                               targets.reshape(-1))


def init_weights(m, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
            else:
                p.fill_(1.0)


def make_opt(m, lr):
    # Velvet's defaults: betas (0.9, 0.95), eps 1e-8, decay 0.1 on matrices.
    dec = [p for p in m.parameters() if p.dim() == 2]
    nod = [p for p in m.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": dec, "weight_decay": 0.1},
                              {"params": nod, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=True)


def flops_per_token(C, L, Fw, V, t):  # vlm_flops_per_token
    return L * (2 * (4 * C * C + 3 * C * Fw) + 4 * t * C) + 2 * C * V


def cmd_train(a):
    from safetensors.torch import save_file
    torch.manual_seed(a.seed)
    dev = "cuda"
    m = VesperLM(a.preset)
    init_weights(m, a.seed)
    if a.init:
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, a.init)
    C, L, H, Fw, T, V = m.cfg
    B, S = a.batch, a.seq
    g = torch.Generator().manual_seed(a.seed + 1)
    tok = torch.randint(0, V, (B, S + 1), generator=g, dtype=torch.int32)
    if a.tokens:
        tok.numpy().tofile(a.tokens)
    m = m.to(dev)
    tok = tok.to(dev).long()
    x, y = tok[:, :-1].contiguous(), tok[:, 1:].contiguous()
    with torch.no_grad():
        l32 = m(x[: min(B, 4)], y[: min(B, 4)]).item()
    print(f"peer fp32 loss at init (first {min(B, 4)} rows): {l32:.5f}")
    opt = make_opt(m, a.lr)
    step_fn = m
    if not a.eager:
        step_fn = torch.compile(m)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_fn(x, y)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss, norm

    t0 = time.time()
    warm, times = 3, []
    for s in range(1, a.steps + warm + 1):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        loss, norm = step()
        e1.record()
        torch.cuda.synchronize()
        ms = e0.elapsed_time(e1)
        if s > warm:
            times.append(ms)
        print(f"step {s:3d} loss {loss.item():.5f} norm {norm.item():.4f} ms {ms:.2f}",
              flush=True)
        if s == 1:
            print(f"peer: first step (compilation) after {time.time() - t0:.1f} s")
    ms = sum(times) / len(times)
    tps = B * S / (ms * 1e-3)
    mfu = 3 * flops_per_token(C, L, Fw, V, S) * tps / PEAK
    mem = torch.cuda.max_memory_allocated() / 2**30
    print(f"peer preset={a.preset} batch={B}x{S} ms={ms:.2f} tokens_per_s={tps:.0f} "
          f"mfu={mfu:.3f} mem_gib={mem:.1f} torch={torch.__version__}")


def cmd_adamw(a):
    m = VesperLM(a.preset).cuda()
    init_weights(m, a.seed)
    for p in m.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    opt = make_opt(m, a.lr)
    for _ in range(5):
        opt.step()
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(a.steps):
        opt.step()
    e1.record()
    torch.cuda.synchronize()
    ms = e0.elapsed_time(e1) / a.steps
    n = sum(p.numel() for p in m.parameters())
    print(f"adamw params={n} ms={ms:.4f} GBps28={28 * n / (ms * 1e-3) / 1e9:.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cmd", choices=["train", "adamw"])
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--init")
    ap.add_argument("--tokens")
    ap.add_argument("--eager", action="store_true")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    (cmd_train if a.cmd == "train" else cmd_adamw)(a)


if __name__ == "__main__":
    main()
