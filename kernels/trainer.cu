// trainer.cu: the CUDA training backend (struct vlm_trainer_ops of
// lib/trainer.h): the model's parameters, gradients, optimizer moments and
// saved activations live on the device, and a whole forward/backward pass
// or optimizer step is one call, a sequence of launches on one stream.
//
// Precision: fp32 master weights, gradients and moments; a bf16 copy of the
// weights for the matrix products (written by the optimizer's pass); bf16
// activations with fp32 accumulation; the residual stream, the norms'
// statistics and the softmax statistics in fp32.
//
// The q, k, v weights are adjacent in the flat layout (lib/vlm_config.h),
// as are gate and up, so each pair of products is one product with a
// weight of (H + 2 KV) hd, or 2F, rows; their gradients land in place.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cuda_api.h"
#include "cuda_common.cuh"
#include "ops.cuh"

namespace {

// Tensor index of a layer's weight in vlm_layout() order.
enum { W_LN1, W_Q, W_K, W_V, W_O, W_LN2, W_GATE, W_UP, W_DOWN, W_PER_LAYER };

const int chunk_elems = 1 << 16;

struct trainer {
	struct vlm_config c;
	int B, T, N;		// N = B*T rows
	int L, C, H, KV, hd, F, V, Vu, QKV;	// QKV = (H + 2 KV) hd
	std::vector<struct vlm_tensor> tens;
	size_t P;		// parameters
	cudaStream_t s;
	struct vk_blas *blas;

	float *p, *g, *m, *v;	// (P) fp32
	bf16 *pbf;		// (P)
	struct vk_chunk *chunks;	// device, nchunks
	int nchunks;
	float2 *rope;		// (T, hd/2)

	int32_t *tok_in, *tok_tgt;	// (N) device
	int32_t *host_tok;		// (2N) pinned

	// Saved activations, by layer.
	float *res;		// (L+1, N, C) residual entering layer l; [L] final
	float *res_mid;		// (L, N, C) after attention
	bf16 *ln1, *ln2;	// (L, N, C)
	bf16 *qkv;		// (L, N, QKV) rotated
	bf16 *att;		// (L, N, H hd)
	bf16 *gu;		// (L, N, 2F)
	bf16 *hact;		// (L, N, F)
	float *rstd1, *rstd2;	// (L, N)
	float *lse;		// (L, B, H, T)
	bf16 *lnf;		// (N, C)
	float *rstdf;		// (N)
	bf16 *logits, *dlogits;	// (N, V)
	float *loss, *ent;	// (N)
	bf16 *delta;		// (N, C) a block's output before the add

	// Backward scratch.
	float *dres;		// (N, C)
	bf16 *dres_bf;		// (N, C)
	bf16 *dwide;		// (N, max(2F, QKV))
	bf16 *dh;		// (N, F)
	bf16 *dln;		// (N, C)
	bf16 *datt;		// (N, H hd)
	float *dsum;		// (B, H, T)

	float *red_part, *red_out;	// reductions: VK_REDUCE_BLOCKS, 2
	float *host_red;		// pinned, 2
	int logits_valid;
	int at_layer;		// where the pass is, for error messages
};

double clampd(double x, double lo, double hi)
{
	return x < lo ? lo : x > hi ? hi : x;
}

size_t wo(const struct trainer *t, int l, int k)
{
	return t->tens[1 + (size_t)l * W_PER_LAYER + k].offset;
}

size_t w_norm(const struct trainer *t)
{
	return t->tens[1 + (size_t)t->L * W_PER_LAYER].offset;
}

size_t w_head(const struct trainer *t)
{
	return t->c.tie ? 0 : t->tens[2 + (size_t)t->L * W_PER_LAYER].offset;
}

// vlm_layout()'s order (lib/vlm_config.c), recomputed here: the backend is
// a shared object that links nothing of lib/, so that it loads into any
// program.  The whole-step test compares every tensor with the CPU
// backend's, which would catch a drift between the two.
void put(std::vector<struct vlm_tensor> &v, int layer, int rows, int cols,
    int is_matrix, size_t *off)
{
	struct vlm_tensor x;
	memset(&x, 0, sizeof x);
	x.rows = rows;
	x.cols = cols;
	x.offset = *off;
	x.is_matrix = is_matrix;
	x.layer = layer;
	*off += (size_t)rows * cols;
	v.push_back(x);
}

void layout(const struct vlm_config *c, std::vector<struct vlm_tensor> &v)
{
	int C = c->dim, F = c->hidden, hd = c->dim / c->heads;
	int kv = c->kv_heads * hd;
	size_t off = 0;

	v.clear();
	put(v, -1, c->vocab, C, 1, &off);
	for (int l = 0; l < c->layers; l++) {
		put(v, l, 1, C, 0, &off);		// input_layernorm
		put(v, l, c->heads * hd, C, 1, &off);	// q_proj
		put(v, l, kv, C, 1, &off);		// k_proj
		put(v, l, kv, C, 1, &off);		// v_proj
		put(v, l, C, c->heads * hd, 1, &off);	// o_proj
		put(v, l, 1, C, 0, &off);		// post_attention_layernorm
		put(v, l, F, C, 1, &off);		// gate_proj
		put(v, l, F, C, 1, &off);		// up_proj
		put(v, l, C, F, 1, &off);		// down_proj
	}
	put(v, -1, 1, C, 0, &off);			// model.norm
	if (!c->tie)
		put(v, -1, c->vocab, C, 1, &off);	// lm_head
}

// Device bytes a model needs: fixed (parameters, optimizer) and per row
// of the batch (activations), so that an out-of-memory message can name
// the batch that fits.
void mem_need(const struct trainer *t, double *fixed, double *per_row)
{
	double L = t->L, C = t->C, F = t->F, Q = t->QKV, A = t->H * t->hd;
	double wide = 2 * F > Q ? 2 * F : Q;
	// Parameters, gradients and moments in fp32 and the bf16 copy; the
	// cuBLASLt workspace; 256 MB for what the library keeps itself.
	*fixed = (double)t->P * (4 * 4 + 2) + (64 << 20) + 256e6;
	*per_row = 4 * ((L + 1) * C + L * C) + 2 * (2 * L * C + L * Q + L * A +
	    L * 2 * F + L * F) + 4 * (2 * L + L * t->H) + 2 * C + 4 +
	    2 * 2 * (double)t->V + 8 + 2 * C +
	    4 * C + 2 * C + 2 * wide + 2 * F + 2 * C + 2 * A + 4 * t->H + 8;
}

void destroy(void *st)
{
	struct trainer *t = (struct trainer *)st;
	if (t == nullptr)
		return;
	void *dev[] = { t->p, t->g, t->m, t->v, t->pbf, t->chunks, t->rope,
	    t->tok_in, t->tok_tgt, t->res, t->res_mid, t->ln1, t->ln2, t->qkv,
	    t->att, t->gu, t->hact, t->rstd1, t->rstd2, t->lse, t->lnf,
	    t->rstdf, t->logits, t->dlogits, t->loss, t->ent, t->delta,
	    t->dres, t->dres_bf, t->dwide, t->dh, t->dln, t->datt, t->dsum,
	    t->red_part, t->red_out };
	for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
		cudaFree(dev[i]);
	cudaFreeHost(t->host_tok);
	cudaFreeHost(t->host_red);
	vk_blas_destroy(t->blas);
	if (t->s)
		cudaStreamDestroy(t->s);
	delete t;
}

template <typename X>
int dalloc(X **p, size_t n, const char *what)
{
	cudaError_t e = cudaMalloc((void **)p, n * sizeof(X));
	if (e != cudaSuccess) {
		cudaGetLastError();
		vk_set_error("cudaMalloc of %zu bytes for %s: %s", n * sizeof(X),
		    what, cudaGetErrorString(e));
		return VK_ERR_NOMEM;
	}
	return 0;
}

int create_in(struct trainer *t, const struct vlm_config *c, int B, int T)
{
	t->c = *c;
	t->B = B;
	t->T = T;
	t->N = B * T;
	t->L = c->layers;
	t->C = c->dim;
	t->H = c->heads;
	t->KV = c->kv_heads;
	t->hd = c->dim / c->heads;
	t->F = c->hidden;
	t->V = c->vocab;
	t->Vu = c->vocab_used;
	t->QKV = (t->H + 2 * t->KV) * t->hd;
	layout(c, t->tens);
	const struct vlm_tensor &last = t->tens.back();
	t->P = last.offset + (size_t)last.rows * last.cols;

	double fixed, per_row;
	mem_need(t, &fixed, &per_row);
	size_t free_b = 0, total_b = 0;
	VK_CHECK(cudaMemGetInfo(&free_b, &total_b));
	double need = fixed + per_row * t->N;
	if (need > 0.97 * (double)free_b) {
		double fit = (0.97 * (double)free_b - fixed) / (per_row * T);
		if (fit >= 1)
			vk_set_error("out of device memory: batch %dx%d needs %.1f "
			    "GiB, %.1f GiB free; a batch of %d x %d would fit", B, T,
			    need / 1073741824.0, free_b / 1073741824.0, (int)fit, T);
		else
			vk_set_error("out of device memory: this model needs %.1f "
			    "GiB, %.1f GiB free, even for one sequence of %d", need /
			    1073741824.0, free_b / 1073741824.0, T);
		return VK_ERR_NOMEM;
	}

	size_t N = t->N, L = t->L, C = t->C, A = (size_t)t->H * t->hd;
	size_t F = t->F, V = t->V;
	size_t wide = 2 * F > (size_t)t->QKV ? 2 * F : (size_t)t->QKV;
	VK_CHECK(cudaStreamCreateWithFlags(&t->s, cudaStreamNonBlocking));
	VK_TRY(vk_blas_create(&t->blas));
	VK_TRY(dalloc(&t->p, t->P, "parameters"));
	VK_TRY(dalloc(&t->g, t->P, "gradients"));
	VK_TRY(dalloc(&t->m, t->P, "first moments"));
	VK_TRY(dalloc(&t->v, t->P, "second moments"));
	VK_TRY(dalloc(&t->pbf, t->P, "bf16 weights"));
	VK_TRY(dalloc(&t->rope, (size_t)T * (t->hd / 2), "rotary table"));
	VK_TRY(dalloc(&t->tok_in, N, "tokens"));
	VK_TRY(dalloc(&t->tok_tgt, N, "targets"));
	VK_TRY(dalloc(&t->res, (L + 1) * N * C, "residual stream"));
	VK_TRY(dalloc(&t->res_mid, L * N * C, "residual stream"));
	VK_TRY(dalloc(&t->ln1, L * N * C, "norm outputs"));
	VK_TRY(dalloc(&t->ln2, L * N * C, "norm outputs"));
	VK_TRY(dalloc(&t->qkv, L * N * t->QKV, "q, k, v"));
	VK_TRY(dalloc(&t->att, L * N * A, "attention outputs"));
	VK_TRY(dalloc(&t->gu, L * N * 2 * F, "MLP gate and up"));
	VK_TRY(dalloc(&t->hact, L * N * F, "MLP activations"));
	VK_TRY(dalloc(&t->rstd1, L * N, "norm statistics"));
	VK_TRY(dalloc(&t->rstd2, L * N, "norm statistics"));
	VK_TRY(dalloc(&t->lse, L * N * t->H, "attention statistics"));
	VK_TRY(dalloc(&t->lnf, N * C, "final norm"));
	VK_TRY(dalloc(&t->rstdf, N, "norm statistics"));
	VK_TRY(dalloc(&t->logits, N * V, "logits"));
	VK_TRY(dalloc(&t->dlogits, N * V, "logit gradients"));
	VK_TRY(dalloc(&t->loss, N, "losses"));
	VK_TRY(dalloc(&t->ent, N, "entropies"));
	VK_TRY(dalloc(&t->delta, N * C, "block outputs"));
	VK_TRY(dalloc(&t->dres, N * C, "residual gradient"));
	VK_TRY(dalloc(&t->dres_bf, N * C, "residual gradient"));
	VK_TRY(dalloc(&t->dwide, N * wide, "gradient scratch"));
	VK_TRY(dalloc(&t->dh, N * F, "gradient scratch"));
	VK_TRY(dalloc(&t->dln, N * C, "gradient scratch"));
	VK_TRY(dalloc(&t->datt, N * A, "gradient scratch"));
	VK_TRY(dalloc(&t->dsum, N * t->H, "attention scratch"));
	VK_TRY(dalloc(&t->red_part, VK_REDUCE_BLOCKS, "reduction scratch"));
	VK_TRY(dalloc(&t->red_out, 2, "reduction scratch"));
	VK_CHECK(cudaMallocHost((void **)&t->host_tok, 2 * N * sizeof(int32_t)));
	VK_CHECK(cudaMallocHost((void **)&t->host_red, 2 * sizeof(float)));

	std::vector<struct vk_chunk> ch;
	for (const struct vlm_tensor &x : t->tens) {
		size_t n = (size_t)x.rows * x.cols;
		for (size_t o = 0; o < n; o += chunk_elems) {
			struct vk_chunk k;
			k.off = x.offset + o;
			k.len = (int)(n - o < (size_t)chunk_elems ? n - o : chunk_elems);
			k.decay = x.is_matrix;
			ch.push_back(k);
		}
	}
	t->nchunks = (int)ch.size();
	VK_TRY(dalloc(&t->chunks, ch.size(), "optimizer chunks"));
	VK_CHECK(cudaMemcpy(t->chunks, ch.data(), ch.size() * sizeof ch[0],
	    cudaMemcpyHostToDevice));
	VK_TRY(vk_rope_table(t->rope, T, t->hd, c->rope_theta, t->s));
	VK_CHECK(cudaMemsetAsync(t->g, 0, t->P * sizeof(float), t->s));
	VK_CHECK(cudaMemsetAsync(t->m, 0, t->P * sizeof(float), t->s));
	VK_CHECK(cudaMemsetAsync(t->v, 0, t->P * sizeof(float), t->s));
	VK_CHECK(cudaStreamSynchronize(t->s));
	return 0;
}

int create(const struct vlm_config *c, int B, int T, void **st)
{
	if (B <= 0 || T <= 0 || T > c->ctx) {
		vk_set_error("batch %d x %d: sequences must be 1 to %d tokens", B,
		    T, c->ctx);
		return VK_ERR_ARG;
	}
	if ((long long)B * T > (1LL << 30) / 4) {
		vk_set_error("batch %d x %d is too large", B, T);
		return VK_ERR_RANGE;
	}
	int hd = c->dim / c->heads;
	if (hd != 32 && hd != 64) {
		vk_set_error("head size %d: the CUDA backend has 32 and 64", hd);
		return VK_ERR_NOTIMPL;
	}
	struct trainer *t = new trainer();
	int err = create_in(t, c, B, T);
	if (err) {
		destroy(t);
		return err;
	}
	*st = t;
	return 0;
}

int set_params(void *st, const float *p)
{
	struct trainer *t = (struct trainer *)st;
	VK_CHECK(cudaMemcpy(t->p, p, t->P * sizeof(float),
	    cudaMemcpyHostToDevice));
	VK_TRY(vk_f32_to_bf16(t->pbf, t->p, t->P, t->s));
	VK_CHECK(cudaStreamSynchronize(t->s));
	return 0;
}

int get_params(void *st, float *p)
{
	struct trainer *t = (struct trainer *)st;
	VK_CHECK(cudaStreamSynchronize(t->s));
	VK_CHECK(cudaMemcpy(p, t->p, t->P * sizeof(float),
	    cudaMemcpyDeviceToHost));
	return 0;
}

int set_moments(void *st, const float *m, const float *v)
{
	struct trainer *t = (struct trainer *)st;
	VK_CHECK(cudaStreamSynchronize(t->s));
	VK_CHECK(cudaMemcpy(t->m, m, t->P * sizeof(float),
	    cudaMemcpyHostToDevice));
	VK_CHECK(cudaMemcpy(t->v, v, t->P * sizeof(float),
	    cudaMemcpyHostToDevice));
	return 0;
}

int get_moments(void *st, float *m, float *v)
{
	struct trainer *t = (struct trainer *)st;
	VK_CHECK(cudaStreamSynchronize(t->s));
	VK_CHECK(cudaMemcpy(m, t->m, t->P * sizeof(float),
	    cudaMemcpyDeviceToHost));
	VK_CHECK(cudaMemcpy(v, t->v, t->P * sizeof(float),
	    cudaMemcpyDeviceToHost));
	return 0;
}

int get_grads(void *st, float *g)
{
	struct trainer *t = (struct trainer *)st;
	VK_CHECK(cudaStreamSynchronize(t->s));
	VK_CHECK(cudaMemcpy(g, t->g, t->P * sizeof(float),
	    cudaMemcpyDeviceToHost));
	return 0;
}

// Data parallel through the host (lib/dp.h): the summed gradients back.
int set_grads(void *st, const float *g)
{
	struct trainer *t = (struct trainer *)st;
	VK_CHECK(cudaStreamSynchronize(t->s));
	VK_CHECK(cudaMemcpy(t->g, g, t->P * sizeof(float),
	    cudaMemcpyHostToDevice));
	return 0;
}

// Data parallel on the device (lib/dp.h's dp_nccl_sum): the gradients
// where they are, and the stream that writes them.
int device_grads(void *st, float **g, void **stream)
{
	struct trainer *t = (struct trainer *)st;
	*g = t->g;
	*stream = t->s;
	return 0;
}

int zero_grad(void *st)
{
	struct trainer *t = (struct trainer *)st;
	VK_CHECK(cudaMemsetAsync(t->g, 0, t->P * sizeof(float), t->s));
	return 0;
}

// Split B rows of T+1 ids into inputs and targets, checking each id: an id
// past the vocabulary would read outside the embedding.
int upload_tokens(struct trainer *t, const int32_t *tokens)
{
	int32_t *in = t->host_tok, *tg = t->host_tok + t->N;
	VK_CHECK(cudaStreamSynchronize(t->s));	// host_tok may be in flight
	for (int b = 0; b < t->B; b++) {
		const int32_t *row = tokens + (size_t)b * (t->T + 1);
		for (int i = 0; i <= t->T; i++)
			if (row[i] < 0 || row[i] >= t->V) {
				vk_set_error("token %d at sequence %d position %d is "
				    "outside the model's vocabulary of %d", row[i], b, i,
				    t->V);
				return VK_ERR_RANGE;
			}
		memcpy(in + (size_t)b * t->T, row, t->T * sizeof *in);
		memcpy(tg + (size_t)b * t->T, row + 1, t->T * sizeof *tg);
	}
	VK_CHECK(cudaMemcpyAsync(t->tok_in, in, t->N * sizeof *in,
	    cudaMemcpyHostToDevice, t->s));
	VK_CHECK(cudaMemcpyAsync(t->tok_tgt, tg, t->N * sizeof *tg,
	    cudaMemcpyHostToDevice, t->s));
	return 0;
}

int forward_layers(struct trainer *t, float dscale, int want_grad);
int backward_layers(struct trainer *t);

// The passes, with the failing pass and layer added to any message.
int run_forward(struct trainer *t, float dscale, int want_grad)
{
	int err = forward_layers(t, dscale, want_grad);
	if (err)
		vk_add_context("forward pass, layer %d of %d", t->at_layer,
		    t->L);
	return err;
}

int run_backward(struct trainer *t)
{
	int err = backward_layers(t);
	if (err)
		vk_add_context("backward pass, layer %d of %d", t->at_layer,
		    t->L);
	return err;
}

int forward_layers(struct trainer *t, float dscale, int want_grad)
{
	int N = t->N, C = t->C, A = t->H * t->hd, F = t->F;
	size_t NC = (size_t)N * C;
	cudaStream_t s = t->s;
	const float eps = t->c.norm_eps;

	t->at_layer = -1;	// -1: embedding; L: the head
	VK_TRY(vk_embed_fwd(t->res, t->p, t->tok_in, N, C, s));
	for (int l = 0; l < t->L; l++) {
		t->at_layer = l;
		float *res = t->res + l * NC, *mid = t->res_mid + l * NC;
		bf16 *ln1 = t->ln1 + l * NC, *ln2 = t->ln2 + l * NC;
		bf16 *qkv = t->qkv + (size_t)l * N * t->QKV;
		bf16 *att = t->att + (size_t)l * N * A;
		bf16 *gu = t->gu + (size_t)l * N * 2 * F;
		bf16 *h = t->hact + (size_t)l * N * F;
		const float *prev = l == 0 ? res : t->res_mid + (l - 1) * NC;
		VK_TRY(vk_rmsnorm_fwd(res, prev, l == 0 ? nullptr : t->delta,
		    t->p + wo(t, l, W_LN1), ln1, t->rstd1 + (size_t)l * N, N, C,
		    eps, s));
		VK_TRY(vk_mm(t->blas, s, 0, 1, N, t->QKV, C, ln1,
		    t->pbf + wo(t, l, W_Q), qkv, 0, 1.0f, 0.0f));
		VK_TRY(vk_rope(qkv, t->rope, N, t->T, t->H, t->KV, t->hd, 1.0f, s));
		VK_TRY(vk_attn_fwd(att, t->lse + (size_t)l * N * t->H, qkv, t->B,
		    t->T, t->H, t->KV, t->hd, s));
		VK_TRY(vk_mm(t->blas, s, 0, 1, N, C, A, att,
		    t->pbf + wo(t, l, W_O), t->delta, 0, 1.0f, 0.0f));
		VK_TRY(vk_rmsnorm_fwd(mid, res, t->delta, t->p + wo(t, l, W_LN2),
		    ln2, t->rstd2 + (size_t)l * N, N, C, eps, s));
		VK_TRY(vk_mm(t->blas, s, 0, 1, N, 2 * F, C, ln2,
		    t->pbf + wo(t, l, W_GATE), gu, 0, 1.0f, 0.0f));
		VK_TRY(vk_gated_fwd(h, gu, N, F, t->c.act, t->c.era_gamma,
		    t->c.era_temp, s));
		VK_TRY(vk_mm(t->blas, s, 0, 1, N, C, F, h,
		    t->pbf + wo(t, l, W_DOWN), t->delta, 0, 1.0f, 0.0f));
	}
	t->at_layer = t->L;
	float *fin = t->res + (size_t)t->L * NC;
	VK_TRY(vk_rmsnorm_fwd(fin, t->res_mid + (size_t)(t->L - 1) * NC,
	    t->delta, t->p + w_norm(t), t->lnf, t->rstdf, N, C, eps, s));
	VK_TRY(vk_mm(t->blas, s, 0, 1, N, t->V, C, t->lnf, t->pbf + w_head(t),
	    t->logits, 0, 1.0f, 0.0f));
	VK_TRY(vk_xent(want_grad ? t->dlogits : nullptr, t->loss, t->ent,
	    t->logits, t->tok_tgt, N, t->V, t->V, dscale, s));
	t->logits_valid = 1;
	VK_TRY(vk_sum(t->red_out, t->red_part, t->loss, N, 0, s));
	VK_TRY(vk_sum(t->red_out + 1, t->red_part, t->ent, N, 0, s));
	VK_CHECK(cudaMemcpyAsync(t->host_red, t->red_out, 2 * sizeof(float),
	    cudaMemcpyDeviceToHost, s));
	return 0;
}

int backward_layers(struct trainer *t)
{
	int N = t->N, C = t->C, A = t->H * t->hd, F = t->F;
	size_t NC = (size_t)N * C;
	cudaStream_t s = t->s;
	struct vk_blas *bl = t->blas;

	t->at_layer = t->L;
	VK_TRY(vk_mm(bl, s, 1, 0, t->V, C, N, t->dlogits, t->lnf,
	    t->g + w_head(t), 1, 1.0f, 1.0f));
	VK_TRY(vk_mm(bl, s, 0, 0, N, C, t->V, t->dlogits, t->pbf + w_head(t),
	    t->dln, 0, 1.0f, 0.0f));
	VK_CHECK(cudaMemsetAsync(t->dres, 0, NC * sizeof(float), s));
	VK_TRY(vk_rmsnorm_bwd(t->dres, t->dres_bf, t->g + w_norm(t), t->dln,
	    t->res + (size_t)t->L * NC, t->p + w_norm(t), t->rstdf, N, C, s));
	for (int l = t->L - 1; l >= 0; l--) {
		t->at_layer = l;
		float *res = t->res + l * NC, *mid = t->res_mid + l * NC;
		bf16 *ln1 = t->ln1 + l * NC, *ln2 = t->ln2 + l * NC;
		bf16 *qkv = t->qkv + (size_t)l * N * t->QKV;
		bf16 *att = t->att + (size_t)l * N * A;
		bf16 *gu = t->gu + (size_t)l * N * 2 * F;
		bf16 *h = t->hact + (size_t)l * N * F;
		// MLP: dres_bf is the gradient of the block's output.
		VK_TRY(vk_mm(bl, s, 1, 0, C, F, N, t->dres_bf, h,
		    t->g + wo(t, l, W_DOWN), 1, 1.0f, 1.0f));
		VK_TRY(vk_mm(bl, s, 0, 0, N, F, C, t->dres_bf,
		    t->pbf + wo(t, l, W_DOWN), t->dh, 0, 1.0f, 0.0f));
		VK_TRY(vk_gated_bwd(t->dwide, t->dh, gu, N, F, t->c.act,
		    t->c.era_gamma, t->c.era_temp, s));
		VK_TRY(vk_mm(bl, s, 1, 0, 2 * F, C, N, t->dwide, ln2,
		    t->g + wo(t, l, W_GATE), 1, 1.0f, 1.0f));
		VK_TRY(vk_mm(bl, s, 0, 0, N, C, 2 * F, t->dwide,
		    t->pbf + wo(t, l, W_GATE), t->dln, 0, 1.0f, 0.0f));
		VK_TRY(vk_rmsnorm_bwd(t->dres, t->dres_bf, t->g + wo(t, l, W_LN2),
		    t->dln, mid, t->p + wo(t, l, W_LN2), t->rstd2 + (size_t)l * N,
		    N, C, s));
		// Attention.
		VK_TRY(vk_mm(bl, s, 1, 0, C, A, N, t->dres_bf, att,
		    t->g + wo(t, l, W_O), 1, 1.0f, 1.0f));
		VK_TRY(vk_mm(bl, s, 0, 0, N, A, C, t->dres_bf,
		    t->pbf + wo(t, l, W_O), t->datt, 0, 1.0f, 0.0f));
		VK_TRY(vk_attn_bwd(t->dwide, t->dsum, t->datt, qkv, att,
		    t->lse + (size_t)l * N * t->H, t->B, t->T, t->H, t->KV, t->hd,
		    s));
		VK_TRY(vk_rope(t->dwide, t->rope, N, t->T, t->H, t->KV, t->hd,
		    -1.0f, s));
		VK_TRY(vk_mm(bl, s, 1, 0, t->QKV, C, N, t->dwide, ln1,
		    t->g + wo(t, l, W_Q), 1, 1.0f, 1.0f));
		VK_TRY(vk_mm(bl, s, 0, 0, N, C, t->QKV, t->dwide,
		    t->pbf + wo(t, l, W_Q), t->dln, 0, 1.0f, 0.0f));
		VK_TRY(vk_rmsnorm_bwd(t->dres, t->dres_bf, t->g + wo(t, l, W_LN1),
		    t->dln, res, t->p + wo(t, l, W_LN1), t->rstd1 + (size_t)l * N,
		    N, C, s));
	}
	t->at_layer = -1;
	VK_TRY(vk_embed_bwd(t->g, t->dres, t->tok_in, N, C, s));
	return 0;
}

int forward_backward(void *st, const int32_t *tokens, float grad_scale,
    float *loss, float *entropy)
{
	struct trainer *t = (struct trainer *)st;
	VK_TRY(upload_tokens(t, tokens));
	VK_TRY(run_forward(t, grad_scale / (float)t->N, 1));
	VK_TRY(run_backward(t));
	VK_CHECK(cudaStreamSynchronize(t->s));
	*loss = t->host_red[0] / (float)t->N;
	if (entropy)
		*entropy = t->host_red[1] / (float)t->N;
	return 0;
}

int forward(void *st, const int32_t *tokens, float *loss)
{
	struct trainer *t = (struct trainer *)st;
	VK_TRY(upload_tokens(t, tokens));
	VK_TRY(run_forward(t, 0.0f, 0));
	VK_CHECK(cudaStreamSynchronize(t->s));
	*loss = t->host_red[0] / (float)t->N;
	return 0;
}

int grad_norm(void *st, float *norm)
{
	struct trainer *t = (struct trainer *)st;
	VK_TRY(vk_sum(t->red_out, t->red_part, t->g, t->P, 1, t->s));
	VK_CHECK(cudaMemcpyAsync(t->host_red, t->red_out, sizeof(float),
	    cudaMemcpyDeviceToHost, t->s));
	VK_CHECK(cudaStreamSynchronize(t->s));
	*norm = sqrtf(t->host_red[0]);
	return 0;
}

int step(void *st, const struct velvet_hparams *hp, float lr, long tstep,
    float grad_mul)
{
	struct trainer *t = (struct trainer *)st;
	if (!(hp->beta1 >= 0 && hp->beta1 < 1) || !(hp->beta2 >= 0 &&
	    hp->beta2 < 1) || !(hp->eps > 0) || !(hp->weight_decay >= 0) ||
	    !std::isfinite(hp->weight_decay) || !(lr >= 0) ||
	    !std::isfinite(lr) || tstep < 1 || !std::isfinite(grad_mul)) {
		vk_set_error("Velvet: bad hyperparameters (betas in [0, 1), eps "
		    "> 0, decay >= 0, lr >= 0, step >= 1; step %ld)", tstep);
		return VK_ERR_ARG;
	}
	// The features' formulas are lib/velvet.c's (velvet_lr_scale,
	// velvet_beta1), which vtrain(1) documents.
	double scale = 1.0, b1 = hp->beta1;
	if (hp->entropy_lr && t->Vu >= 2) {
		double e = hp->batch_entropy / log((double)t->Vu);
		scale = clampd(1 + hp->entropy_lr_k * (e - 0.5), 0.5, 2.0);
	}
	if (hp->ppl_momentum)
		b1 = clampd(hp->beta1 + hp->ppl_momentum_k *
		    ((double)hp->batch_loss - hp->loss_ema), 0.5, 0.99);
	double l = lr * scale;
	struct vk_adamw h;
	h.lr = (float)l;
	h.weight_decay = hp->weight_decay;
	h.one_minus_b1 = (float)(1 - b1);
	h.beta2 = hp->beta2;
	h.one_minus_b2 = (float)(1 - (double)hp->beta2);
	h.step_size = (float)(l / (1 - pow((double)hp->beta1, (double)tstep)));
	h.bc2_sqrt = (float)sqrt(1 - pow((double)hp->beta2, (double)tstep));
	h.eps = hp->eps;
	h.grad_mul = grad_mul;
	h.decay_all = hp->decay_vectors;
	h.sparse = hp->sparse;
	VK_TRY(vk_velvet(t->p, t->pbf, t->g, t->m, t->v, t->chunks, t->nchunks,
	    &h, t->s));
	VK_CHECK(cudaStreamSynchronize(t->s));
	return 0;
}

int get_logits(void *st, float *out)
{
	struct trainer *t = (struct trainer *)st;
	if (!t->logits_valid) {
		vk_set_error("no forward pass has run yet");
		return VK_ERR_ARG;
	}
	size_t n = (size_t)t->N * t->V;
	std::vector<uint16_t> h(n);
	VK_CHECK(cudaStreamSynchronize(t->s));
	VK_CHECK(cudaMemcpy(h.data(), t->logits, n * 2, cudaMemcpyDeviceToHost));
	for (size_t i = 0; i < n; i++) {
		uint32_t u = (uint32_t)h[i] << 16;
		memcpy(&out[i], &u, 4);
	}
	return 0;
}

} // namespace

extern const struct vlm_trainer_ops vk_cuda_trainer;
const struct vlm_trainer_ops vk_cuda_trainer = {
	"cuda",
	create,
	destroy,
	set_params,
	get_params,
	set_moments,
	get_moments,
	get_grads,
	zero_grad,
	forward_backward,
	forward,
	grad_norm,
	step,
	get_logits,
	set_grads,
	device_grads,
};
