/* model_cpu.h: VesperLM forward and backward on the CPU, in fp32.
 *
 * The reference that the CUDA backend is checked against, so each layer is
 * a plain forward/backward pair that the tests check on its own (finite
 * differences) and together (PyTorch's values in tests/golden/).  Sizes are
 * named once: B sequences of T tokens, N = B*T rows, C width, H heads of
 * hd = C/H, KV key/value heads, F MLP width, V vocabulary.  Activations are
 * row-major (N, width).  A backward function adds into weight gradients
 * (gradient accumulation) and overwrites the gradient of its input unless
 * it says otherwise.
 *
 * The whole model is exported as vlm_cpu_trainer (lib/trainer.h). */
#ifndef VESPER_MODEL_CPU_H
#define VESPER_MODEL_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "vlm_config.h"

/* out = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps) per row (saved). */
void vlm_rmsnorm_forward(float *out, float *rstd, const float *x,
    const float *w, int N, int C, float eps);
/* dx += d/dx, dw += d/dw (dx accumulates: the residual stream's gradient). */
void vlm_rmsnorm_backward(float *dx, float *dw, const float *dout,
    const float *x, const float *w, const float *rstd, int N, int C);

/* cos/sin of position t and frequency i: (T, hd/2), angle t*theta^(-2i/hd). */
void vlm_rope_tables(float *cosv, float *sinv, int T, int hd, float theta);
/* Rotate the pairs (i, i+hd/2) of each of nh heads of rows (B*T, nh*hd) in
 * place; the backward is the inverse rotation of the gradient. */
void vlm_rope_forward(float *x, const float *cosv, const float *sinv,
    int B, int T, int nh, int hd);
void vlm_rope_backward(float *dx, const float *cosv, const float *sinv,
    int B, int T, int nh, int hd);

/* Causal attention: q (N, H*hd), k and v (N, KV*hd), query head h reading
 * key/value head h / (H/KV).  y (N, H*hd); att (B, H, T, T) the
 * probabilities, rows filled up to the diagonal.  The backward writes dq,
 * dk, dv.  These allocate their scratch (V_ERR_NOMEM if they cannot); the
 * _ws forms take it, vlm_attention_work() floats, from the caller. */
int vlm_attention_forward(float *y, float *att, const float *q,
    const float *k, const float *v, int B, int T, int H, int KV, int hd);
int vlm_attention_backward(float *dq, float *dk, float *dv, const float *dy,
    const float *att, const float *q, const float *k, const float *v,
    int B, int T, int H, int KV, int hd);
size_t vlm_attention_work(int B, int T, int H, int hd);
void vlm_attention_forward_ws(float *y, float *att, const float *q,
    const float *k, const float *v, int B, int T, int H, int KV, int hd,
    float *work);
void vlm_attention_backward_ws(float *dq, float *dk, float *dv,
    const float *dy, const float *att, const float *q, const float *k,
    const float *v, int B, int T, int H, int KV, int hd, float *work);

/* The MLP gate activation and its derivative (ERA with gamma, temp). */
float vlm_act(int act, float x, float gamma, float temp);
float vlm_act_grad(int act, float x, float gamma, float temp);
/* out = act(g) * u over n values; backward writes dg and du. */
void vlm_glu_forward(float *out, const float *g, const float *u, size_t n,
    int act, float gamma, float temp);
void vlm_glu_backward(float *dg, float *du, const float *dout,
    const float *g, const float *u, size_t n, int act, float gamma,
    float temp);

/* Softmax cross-entropy of logits rows (N, V) against targets, in nats:
 * *loss the mean loss, *entropy (when not NULL) the mean entropy of the
 * predicted distributions; with dlogits not NULL, writes scale times the
 * gradient of the mean loss there (dlogits may be logits itself).
 * V_ERR_RANGE for a target outside [0, V). */
int vlm_xent(float *dlogits, double *loss, double *entropy,
    const float *logits, const int32_t *targets, int N, int V, float scale);

/* y (N, out) = x (N, in) W^T, W (out, in): the Llama projection. */
void vlm_matmul_forward(float *y, const float *x, const float *w, int N,
    int in, int out);
/* dx (N, in) = dy W (+ dx when accumulate), dw (out, in) += dy^T x. */
void vlm_matmul_backward(float *dx, float *dw, const float *dy,
    const float *x, const float *w, int N, int in, int out, int accumulate);

/* Seconds spent in, and FLOPs done by, the matrix products since start
 * (bench/train_cpu reports the share of the sgemm rate they reach). */
void vlm_matmul_stats(double *seconds, double *flops);

#endif
