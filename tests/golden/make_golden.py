#!/usr/bin/env python3
"""make_golden.py OUTDIR: reference values from PyTorch for the CPU backend.

Writes into OUTDIR
  golden.json      what each binary file holds, and the scalar results;
  model_NAME.bin   for three small VesperLM models (silu untied with grouped
                   key/value heads, era tied, gelu tied): the tokens, the
                   parameters in vlm_layout() order, the logits and every
                   gradient of the mean cross-entropy;
  adamw.bin        100 steps of torch.optim.AdamW (matrices decayed, vectors
                   not) after torch.nn.utils.clip_grad_norm_, on gradients
                   drawn here and stored, with a warmup + cosine schedule;
  train_NAME.bin   5 whole training steps of two of the models (gradient
                   accumulation, clipping, AdamW), as vtrain takes them: the
                   first and last parameters and the tokens of each step.

The model is written out by hand in torch (no transformers needed) in the
Hugging Face Llama form: RMSNorm, rotate_half rotary positions, grouped
key/value heads repeated head by head, gated MLP.  It runs in float64 from
float32 parameters, so the stored values are the exact arithmetic that the
C code approximates in float32.  The optimizer runs in float32, as in
training.  Run: python3 make_golden.py tests/golden/
"""
import json
import math
import os
import sys
from array import array

import torch

assert array('f').itemsize == 4 and array('i').itemsize == 4
assert sys.byteorder == 'little'


def f32(t):
    return array('f', t.detach().to(torch.float32).flatten().tolist()).tobytes()


def i32(t):
    return array('i', t.flatten().tolist()).tobytes()


def layout(c):
    """(name, rows, cols, is_matrix) in the order of lib/vlm_config.c."""
    C, F, hd = c['dim'], c['hidden'], c['dim'] // c['heads']
    kv = c['kv_heads'] * hd
    t = [('model.embed_tokens.weight', c['vocab'], C, 1)]
    for l in range(c['layers']):
        p = 'model.layers.%d.' % l
        t += [(p + 'input_layernorm.weight', 1, C, 0),
              (p + 'self_attn.q_proj.weight', c['heads'] * hd, C, 1),
              (p + 'self_attn.k_proj.weight', kv, C, 1),
              (p + 'self_attn.v_proj.weight', kv, C, 1),
              (p + 'self_attn.o_proj.weight', C, c['heads'] * hd, 1),
              (p + 'post_attention_layernorm.weight', 1, C, 0),
              (p + 'mlp.gate_proj.weight', F, C, 1),
              (p + 'mlp.up_proj.weight', F, C, 1),
              (p + 'mlp.down_proj.weight', C, F, 1)]
    t.append(('model.norm.weight', 1, C, 0))
    if not c['tie']:
        t.append(('lm_head.weight', c['vocab'], C, 1))
    return t


def activation(c, x):
    if c['act'] == 'silu':
        return x * torch.sigmoid(x)
    if c['act'] == 'gelu':
        return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    # ERA: x*s*(1 + gamma*H(s)), s = sigmoid(x/T), H in bits; the entropy
    # through softplus so that it stays finite where s rounds to 0 or 1.
    u = x / c['era_temp']
    s = torch.sigmoid(u)
    h = (s * torch.nn.functional.softplus(-u)
         + (1 - s) * torch.nn.functional.softplus(u)) / math.log(2)
    return x * s * (1 + c['era_gamma'] * h)


def rmsnorm(c, x, w):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c['norm_eps']))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(c, P, tokens):
    B, T1 = tokens.shape
    T = T1 - 1
    inp, tgt = tokens[:, :T], tokens[:, 1:]
    H, KV, C = c['heads'], c['kv_heads'], c['dim']
    hd = C // H
    inv = 1.0 / (c['rope_theta'] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    ang = torch.cat((ang, ang), dim=-1)
    cos, sin = ang.cos(), ang.sin()
    mask = torch.full((T, T), float('-inf'), dtype=torch.float64).triu(1)
    x = P['model.embed_tokens.weight'][inp]
    for l in range(c['layers']):
        p = 'model.layers.%d.' % l
        h = rmsnorm(c, x, P[p + 'input_layernorm.weight'])
        q = (h @ P[p + 'self_attn.q_proj.weight'].T).view(B, T, H, hd).transpose(1, 2)
        k = (h @ P[p + 'self_attn.k_proj.weight'].T).view(B, T, KV, hd).transpose(1, 2)
        v = (h @ P[p + 'self_attn.v_proj.weight'].T).view(B, T, KV, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, dim=-1)
        y = (a @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ P[p + 'self_attn.o_proj.weight'].T
        h = rmsnorm(c, x, P[p + 'post_attention_layernorm.weight'])
        g = activation(c, h @ P[p + 'mlp.gate_proj.weight'].T)
        u = h @ P[p + 'mlp.up_proj.weight'].T
        x = x + (g * u) @ P[p + 'mlp.down_proj.weight'].T
    x = rmsnorm(c, x, P['model.norm.weight'])
    head = P['model.embed_tokens.weight'] if c['tie'] else P['lm_head.weight']
    logits = x @ head.T
    lp = torch.log_softmax(logits, dim=-1)
    loss = torch.nn.functional.nll_loss(lp.reshape(B * T, -1), tgt.reshape(-1))
    entropy = -(lp.exp() * lp).sum(-1).mean()
    return logits, loss, entropy


def model_case(out, name, c, seed, B, T):
    g = torch.Generator().manual_seed(seed)
    P, order = {}, layout(c)
    for n, r, k, is_matrix in order:
        if is_matrix:
            w = torch.randn(r, k, generator=g) * 0.3
        else:
            w = 1 + 0.2 * torch.randn(k, generator=g)
        P[n] = w.to(torch.float32).to(torch.float64).requires_grad_(True)
    tokens = torch.randint(0, c['vocab_used'], (B, T + 1), generator=g)
    logits, loss, entropy = forward(c, P, tokens)
    loss.backward()
    flat_p = torch.cat([P[n].detach().flatten() for n, *_ in order])
    flat_g = torch.cat([P[n].grad.flatten() for n, *_ in order])
    parts = [('tokens', i32(tokens), tokens.numel()),
             ('params', f32(flat_p), flat_p.numel()),
             ('logits', f32(logits), logits.numel()),
             ('grads', f32(flat_g), flat_g.numel())]
    sections, blob = {}, b''
    for key, data, count in parts:
        sections[key] = [len(blob), count]
        blob += data
    fname = 'model_%s.bin' % name
    with open(os.path.join(out, fname), 'wb') as f:
        f.write(blob)
    return {'name': name, 'file': fname, 'config': c, 'B': B, 'T': T,
            'loss': loss.item(), 'entropy': entropy.item(),
            'sections': sections}


def train_case(out, name, c, seed, B, T, steps, accum):
    """steps of training as vtrain runs them: accum micro-batches per step,
    each weighted 1/accum, clip_grad_norm_ to 1, torch.optim.AdamW at a
    constant rate with decay on the matrices only; in float64."""
    g = torch.Generator().manual_seed(seed)
    P, order = {}, layout(c)
    for n, r, k, is_matrix in order:
        if is_matrix:
            w = torch.randn(r, k, generator=g) * 0.3
        else:
            w = 1 + 0.2 * torch.randn(k, generator=g)
        P[n] = w.to(torch.float32).to(torch.float64).requires_grad_(True)
    p0 = torch.cat([P[n].detach().flatten() for n, *_ in order]).clone()
    mats = [P[n] for n, _, _, m in order if m]
    vecs = [P[n] for n, _, _, m in order if not m]
    lr, wd = 1e-2, 0.1
    opt = torch.optim.AdamW([{'params': mats, 'weight_decay': wd},
                             {'params': vecs, 'weight_decay': 0.0}],
                            lr=lr, betas=(0.9, 0.95), eps=1e-8, foreach=False)
    toks, losses = [], []
    for t in range(steps):
        opt.zero_grad()
        total = 0.0
        for a in range(accum):
            tokens = torch.randint(0, c['vocab_used'], (B, T + 1), generator=g)
            toks.append(tokens)
            _, loss, _ = forward(c, P, tokens)
            (loss / accum).backward()
            total += loss.item() / accum
        losses.append(total)
        torch.nn.utils.clip_grad_norm_([P[n] for n, *_ in order], 1.0,
                                       foreach=False)
        opt.step()
    p1 = torch.cat([P[n].detach().flatten() for n, *_ in order])
    alltok = torch.stack(toks)
    parts = [('params0', f32(p0), p0.numel()),
             ('tokens', i32(alltok), alltok.numel()),
             ('params', f32(p1), p1.numel())]
    sections, blob = {}, b''
    for key, data, count in parts:
        sections[key] = [len(blob), count]
        blob += data
    fname = 'train_%s.bin' % name
    with open(os.path.join(out, fname), 'wb') as f:
        f.write(blob)
    return {'name': name, 'file': fname, 'config': c, 'B': B, 'T': T,
            'steps': steps, 'accum': accum, 'lr': lr, 'weight_decay': wd,
            'beta1': 0.9, 'beta2': 0.95, 'eps': 1e-8, 'clip': 1.0,
            'losses': losses, 'sections': sections}


def schedule(t, lr_max, warmup, steps, lr_min):
    """Warmup then cosine, as vtrain(1) defines it; t is 1-based."""
    if t <= warmup:
        return lr_max * t / warmup
    p = (t - warmup) / (steps - warmup)
    return lr_min + (lr_max - lr_min) * 0.5 * (1 + math.cos(math.pi * p))


def adamw_case(out):
    g = torch.Generator().manual_seed(1234)
    steps, lr_max, warmup, wd, clip = 100, 1e-2, 10, 0.1, 1.0
    W = (torch.randn(8, 16, generator=g) * 0.5).requires_grad_(True)
    b = (1 + 0.1 * torch.randn(16, generator=g)).requires_grad_(True)
    p0 = torch.cat([W.detach().flatten(), b.detach().flatten()]).clone()
    opt = torch.optim.AdamW([{'params': [W], 'weight_decay': wd},
                             {'params': [b], 'weight_decay': 0.0}],
                            lr=lr_max, betas=(0.9, 0.95), eps=1e-8,
                            foreach=False)
    grads, lrs, norms = [], [], []
    for t in range(1, steps + 1):
        # Some steps large enough to clip, most not.
        scale = 0.5 if t % 3 == 0 else 0.02
        gw = torch.randn(8, 16, generator=g) * scale
        gb = torch.randn(16, generator=g) * scale
        grads.append(torch.cat([gw.flatten(), gb.flatten()]))
        W.grad, b.grad = gw.clone(), gb.clone()
        n = torch.nn.utils.clip_grad_norm_([W, b], clip, foreach=False)
        norms.append(n.item())
        lr = schedule(t, lr_max, warmup, steps, lr_max / 10)
        lrs.append(lr)
        for grp in opt.param_groups:
            grp['lr'] = lr
        opt.step()
    p1 = torch.cat([W.detach().flatten(), b.detach().flatten()])
    m = torch.cat([opt.state[W]['exp_avg'].flatten(), opt.state[b]['exp_avg'].flatten()])
    v = torch.cat([opt.state[W]['exp_avg_sq'].flatten(), opt.state[b]['exp_avg_sq'].flatten()])
    parts = [('params0', f32(p0), p0.numel()),
             ('grads', f32(torch.stack(grads)), steps * p0.numel()),
             ('params', f32(p1), p1.numel()),
             ('m', f32(m), m.numel()), ('v', f32(v), v.numel())]
    sections, blob = {}, b''
    for key, data, count in parts:
        sections[key] = [len(blob), count]
        blob += data
    with open(os.path.join(out, 'adamw.bin'), 'wb') as f:
        f.write(blob)
    return {'file': 'adamw.bin', 'steps': steps, 'rows': 8, 'cols': 16,
            'lr': lr_max, 'warmup': warmup, 'min_lr': lr_max / 10,
            'beta1': 0.9, 'beta2': 0.95, 'eps': 1e-8, 'weight_decay': wd,
            'clip': clip, 'lrs': lrs, 'grad_norms': norms,
            'sections': sections}


def config(act, tie, kv_heads, gamma=0.5, temp=1.0):
    return {'vocab': 128, 'vocab_used': 100, 'dim': 16, 'layers': 2,
            'heads': 4, 'kv_heads': kv_heads, 'hidden': 24, 'ctx': 16,
            'act': act, 'era_gamma': gamma, 'era_temp': temp, 'tie': tie,
            'norm_eps': 1e-5, 'rope_theta': 10000.0}


def main():
    if len(sys.argv) != 2:
        sys.exit('usage: make_golden.py OUTDIR')
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    doc = {'torch': torch.__version__, 'models': [
        model_case(out, 'silu', config('silu', False, 2), 1, 2, 8),
        model_case(out, 'era', config('era', True, 4, 0.7, 1.5), 2, 2, 8),
        model_case(out, 'gelu', config('gelu', True, 1), 3, 3, 5)]}
    doc['adamw'] = adamw_case(out)
    doc['train'] = [
        train_case(out, 'silu', config('silu', False, 2), 11, 2, 8, 5, 2),
        train_case(out, 'era', config('era', True, 4, 0.7, 1.5), 12, 2, 8, 5, 3)]
    with open(os.path.join(out, 'golden.json'), 'w') as f:
        json.dump(doc, f, indent=1)
        f.write('\n')


if __name__ == '__main__':
    main()
