// ops.cuh: the launchers of every training op, for trainer.cu and for the
// per-kernel tests in tests/gpu/.  Each takes device pointers and a stream,
// launches, checks the launch, and returns 0 or VK_ERR_DEVICE.
//
// Sizes: B sequences of T tokens, N = B*T rows; C model width; H query
// heads and KV key/value heads of hd each; F MLP width; V vocabulary rows
// (Vu of them used by the tokenizer).  Row-major throughout.
#ifndef VESPER_OPS_CUH
#define VESPER_OPS_CUH

#include <cstddef>
#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

typedef __nv_bfloat16 bf16;

// embedding.cu
// res (N, C) fp32 = wte[tok[n]] (wte (V, C) fp32 master weights).
int vk_embed_fwd(float *res, const float *wte, const int32_t *tok, int N, int C,
    cudaStream_t s);
// dwte[tok[n]] += dres[n] (atomic: a token may repeat).
int vk_embed_bwd(float *dwte, const float *dres, const int32_t *tok, int N,
    int C, cudaStream_t s);

// rmsnorm.cu
// res_out = res_in + delta (delta may be NULL: res_out = res_in, and then
// res_out may equal res_in); out = bf16(res_out * rstd * w); rstd (N).
int vk_rmsnorm_fwd(float *res_out, const float *res_in, const bf16 *delta,
    const float *w, bf16 *out, float *rstd, int N, int C, float eps,
    cudaStream_t s);
// Backward of out = x * rstd * w given dout: dres += dx and dres_bf =
// bf16(dres) (the residual gradient the next matrix product reads);
// dw += sum over rows of dout * x * rstd.
int vk_rmsnorm_bwd(float *dres, bf16 *dres_bf, float *dw, const bf16 *dout,
    const float *x, const float *w, const float *rstd, int N, int C,
    cudaStream_t s);
// dres_bf = bf16(dres), where no norm backward precedes.
int vk_f32_to_bf16(bf16 *out, const float *in, size_t n, cudaStream_t s);

// rope.cu
// Rotate in place the q (H heads) and k (KV heads) of qkv rows
// ((H + 2 KV) hd wide, T rows a sequence): pairs (i, i + hd/2) by the angle
// t * theta^(-2i/hd).  sign -1 rotates back (the backward pass).
// cs: (T, hd/2) of (cos, sin) pairs from vk_rope_table.
int vk_rope(bf16 *qkv, const float2 *cs, int N, int T, int H, int KV, int hd,
    float sign, cudaStream_t s);
int vk_rope_table(float2 *cs, int T, int hd, float theta, cudaStream_t s);

// attention.cu: causal attention, flash style (no T x T matrix in memory),
// on the tensor cores; head sizes 32, 64 and 128.
// qkv rows as above (rotated); out (N, H hd); lse (B, H, T) natural log of
// each softmax's denominator, kept for the backward pass.
int vk_attn_fwd(bf16 *out, float *lse, const bf16 *qkv, int B, int T, int H,
    int KV, int hd, cudaStream_t s);
// dqkv (N, (H + 2 KV) hd) is written (not accumulated); dsum (B, H, T) is
// scratch for rowsum(dout * out).
int vk_attn_bwd(bf16 *dqkv, float *dsum, const bf16 *dout, const bf16 *qkv,
    const bf16 *out, const float *lse, int B, int T, int H, int KV, int hd,
    cudaStream_t s);
// attention_simple.cu: the same two functions in plain fp32 arithmetic
// (head sizes 32 and 64), a second reference for the tests.
int vk_attn_fwd_simple(bf16 *out, float *lse, const bf16 *qkv, int B, int T,
    int H, int KV, int hd, cudaStream_t s);
int vk_attn_bwd_simple(bf16 *dqkv, float *dsum, const bf16 *dout,
    const bf16 *qkv, const bf16 *out, const float *lse, int B, int T, int H,
    int KV, int hd, cudaStream_t s);

// mlp_act.cu: gu rows are (gate F | up F); h = act(gate) * up.
int vk_gated_fwd(bf16 *h, const bf16 *gu, int N, int F, int act, float gamma,
    float temp, cudaStream_t s);
int vk_gated_bwd(bf16 *dgu, const bf16 *dh, const bf16 *gu, int N, int F,
    int act, float gamma, float temp, cudaStream_t s);

// xent.cu: softmax cross-entropy over the first Vu of V logits a row.
// loss[n] = lse - z[tgt]; ent[n] = the entropy of the softmax (nats);
// dlogits (may be NULL) = (softmax - onehot) * dscale, 0 past Vu.
int vk_xent(bf16 *dlogits, float *loss, float *ent, const bf16 *logits,
    const int32_t *tgt, int N, int V, int Vu, float dscale, cudaStream_t s);

// reduce.cu
// out[0] = sum of x (n floats); part is scratch of VK_REDUCE_BLOCKS floats.
#define VK_REDUCE_BLOCKS 264
int vk_sum(float *out, float *part, const float *x, size_t n, int squares,
    cudaStream_t s);

// velvet.cu: AdamW over the flat parameter array, one pass: fp32 master
// p, its bf16 copy pbf, moments m and v, gradients g times grad_mul.
// Work comes in chunks that lie inside one tensor, so that whether weight
// decay applies is a property of the chunk.
struct vk_chunk {
	size_t off;	// first element
	int len;	// elements
	int decay;	// a matrix: weight decay applies
};
// The step's constants, prepared on the host as lib/velvet.c's
// velvet_prepare does (Velvet's features change lr and beta1 there).
struct vk_adamw {
	float lr;		// after the entropy-adaptive scale
	float weight_decay;
	float one_minus_b1;	// 1 - beta1 (perplexity-guided beta1)
	float beta2, one_minus_b2;
	float step_size;	// lr / (1 - beta1^t)
	float bc2_sqrt;		// sqrt(1 - beta2^t)
	float eps, grad_mul;
	int decay_all;		// decay vectors (norm weights) too
	int sparse;		// skip elements whose gradient is exactly 0
};
int vk_velvet(float *p, bf16 *pbf, const float *g, float *m, float *v,
    const struct vk_chunk *chunks, int nchunks, const struct vk_adamw *h,
    cudaStream_t s);

// matmul.cu: cuBLASLt, bf16 inputs, fp32 accumulation.
// Row-major C (m, n) = alpha * op(A) op(B) + beta * C, with A (m, k) when
// not transposed (else stored (k, m)), B (k, n) when not transposed (else
// stored (n, k)); C bf16, or fp32 when c_f32.
struct vk_blas;
int vk_blas_create(struct vk_blas **b);
void vk_blas_destroy(struct vk_blas *b);
int vk_mm(struct vk_blas *b, cudaStream_t s, int ta, int tb, int m, int n,
    int k, const bf16 *A, const bf16 *Bm, void *C, int c_f32, float alpha,
    float beta);

#endif
