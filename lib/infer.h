/* infer.h: VesperLM inference on the CPU, one step of one or several
 * sequences at a time, with a key/value cache.
 *
 * The weights are kept in the type they were stored in (fp32, bf16, or the
 * INT8 / INT4 weight-only quantisation of vquant) and each matrix-vector
 * product reads that type directly: decode is bound by the bytes of weight
 * it reads per token, so a bf16 model decodes about twice as fast as an
 * fp32 one, and INT4 faster still.  Activations, the cache and all sums are
 * fp32.
 *
 * A step takes n "slots", each a (state, token, position).  n slots of one
 * sequence at consecutive positions are a prompt chunk (prefill); n slots of
 * n different sequences are a batched decode step.  Either way each weight
 * row is read once for all n. */
#ifndef VESPER_INFER_H
#define VESPER_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "vlm_config.h"

enum infer_type { INFER_F32, INFER_BF16, INFER_Q8, INFER_Q4 };

/* A weight matrix, row-major (out, in): y = W x.
 *   F32:  w is float (rows, cols)
 *   BF16: w is uint16_t (rows, cols), the high half of an fp32
 *   Q8:   w is int8_t (rows, cols); W[r][c] = w[r][c] * scale[r]
 *   Q4:   w is uint8_t (rows, cols/2), two weights a byte, element 2j in
 *         the low nibble of byte j and 2j+1 in the high nibble, each an
 *         unsigned 4-bit q; W[r][c] = (q - 8) * scale[r][c / group] */
struct infer_mat {
	int type;		/* enum infer_type */
	int rows, cols;
	int group;		/* Q4: weights per scale (32, 64, 128) */
	const void *w;
	const float *scale;	/* Q8: (rows); Q4: (rows, cols/group) */
};

/* y[b] = W x[b] for b < n: x is (n, cols), y is (n, rows).  Fails only
 * for want of scratch memory. */
int infer_matmul(const struct infer_mat *m, const float *x, float *y, int n);
/* Use (on = 1, the default) or not the hand-written AVX2 kernels for the
 * INT8/INT4 products, so that tests can check both; returns whether they
 * are in use. */
int infer_simd(int on);
/* Row r of W as floats (the embedding lookup, and tests). */
void infer_mat_row(const struct infer_mat *m, int r, float *out);
/* Bytes the matrix's weights and scales occupy. */
size_t infer_mat_bytes(const struct infer_mat *m);

struct infer_layer {
	const float *attn_norm;		/* (C) input_layernorm */
	const float *mlp_norm;		/* (C) post_attention_layernorm */
	struct infer_mat wq;		/* (H*hd, C) */
	struct infer_mat wk, wv;	/* (KV*hd, C) */
	struct infer_mat wo;		/* (C, H*hd) */
	struct infer_mat gate, up;	/* (F, C) */
	struct infer_mat down;		/* (C, F) */
};

struct infer_model {
	struct vlm_config c;
	struct infer_mat embed;		/* (V, C) */
	struct infer_layer *layer;	/* (L) */
	const float *final_norm;	/* (C) */
	struct infer_mat head;		/* (vocab_used, C): rows past the
					 * tokenizer's are never computed */
	float *rope_cos, *rope_sin;	/* (ctx, hd/2) */
	/* What the model owns: allocations to free, a file to close. */
	void **own;
	int n_own, cap_own;
	void *file;			/* struct st_file *, or NULL */
	char dtype_name[24];		/* "f32", "bf16", "int8", "int4-g64" */
};

/* A model over params, the fp32 flat array of vlm_layout() order (not
 * copied: it must outlive the model).  as: INFER_F32 uses params in place;
 * INFER_BF16 rounds a copy of the matrices to bf16 (for tests and
 * benchmarks of the bf16 kernels). */
int infer_model_from_flat(struct infer_model *m, const struct vlm_config *c,
    const float *params, int as);
/* A checkpoint: a directory holding model.safetensors, or the file
 * itself.  fp32, bf16 and f16 tensors, and vquant's INT8/INT4 layout. */
int infer_model_open(struct infer_model *m, const char *path);
void infer_model_free(struct infer_model *m);
/* Bytes of weights a decode step reads. */
size_t infer_model_bytes(const struct infer_model *m);

/* One sequence's cache and position. */
struct infer_state {
	int cap;		/* positions the cache holds */
	float *k, *v;		/* (L, cap, KV*hd) */
};

int infer_state_init(struct infer_state *s, const struct infer_model *m,
    int cap);
void infer_state_free(struct infer_state *s);

struct infer_slot {
	struct infer_state *st;
	int token;
	int pos;		/* < st->cap */
	float *logits;		/* (vocab_used) written here, or NULL: skip
				 * the output head for this slot */
};

/* Activations for up to cap slots at once, reused between steps. */
struct infer_work {
	int cap, ctx;
	float *x, *xb, *q, *kv, *ao, *hb, *hb2;
	float *att;		/* (cap*H, ctx) attention scores */
	float *logits;		/* (cap, vocab_used) */
};

int infer_work_init(struct infer_work *w, const struct infer_model *m,
    int cap);
void infer_work_free(struct infer_work *w);

/* Run n <= w->cap slots through the model.  Slots of one state must come
 * in increasing position, each position's predecessors already in the
 * cache or earlier in this call. */
int infer_step(const struct infer_model *m, struct infer_work *w,
    const struct infer_slot *slot, int n);

/* The gated MLP's activation a(gate), as the training model applies it. */
float infer_act(const struct vlm_config *c, float x);

#endif
