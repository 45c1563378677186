/* vlm_config.h: the VesperLM configuration and the checkpoint layout that
 * vtrain, vckpt, vquant and vgen share.
 *
 * Tensors are named as Hugging Face's LlamaForCausalLM names them, so that
 * an export is a copy and an import a check:
 *   model.embed_tokens.weight                     (V, C)
 *   model.layers.L.input_layernorm.weight         (C)
 *   model.layers.L.self_attn.q_proj.weight        (H*hd, C)
 *   model.layers.L.self_attn.k_proj.weight        (KV*hd, C)
 *   model.layers.L.self_attn.v_proj.weight        (KV*hd, C)
 *   model.layers.L.self_attn.o_proj.weight        (C, H*hd)
 *   model.layers.L.post_attention_layernorm.weight (C)
 *   model.layers.L.mlp.gate_proj.weight           (F, C)
 *   model.layers.L.mlp.up_proj.weight             (F, C)
 *   model.layers.L.mlp.down_proj.weight           (C, F)
 *   model.norm.weight                             (C)
 *   lm_head.weight                                (V, C), absent when tied
 * Matrices are row-major (out, in): y = W x.  Rotary positions rotate the
 * pairs (i, i + hd/2) of each head (the Hugging Face "rotate_half" form).
 *
 * safetensors __metadata__ (all values strings):
 *   "format": "vesper", "vesper.config": vlm_config_json(),
 *   "vesper.tokenizer": sha256 hex of the tokenizer file, or "",
 *   "vesper.step": the training step.
 * A checkpoint is a directory step-NNNNNNNN/ holding model.safetensors,
 * optimizer.bin and cursor.json; `latest` is a symbolic link to the newest.
 * vgen, vquant and vckpt accept either the directory or the .safetensors. */
#ifndef VESPER_VLM_CONFIG_H
#define VESPER_VLM_CONFIG_H

#include <stddef.h>
#include <stdint.h>

enum vlm_act { VLM_ACT_SILU, VLM_ACT_GELU, VLM_ACT_ERA };

struct vlm_config {
	int vocab;		/* V: embedding rows, a multiple of 128 */
	int vocab_used;		/* the tokenizer's size, <= vocab */
	int dim;		/* C */
	int layers;		/* L */
	int heads;		/* H */
	int kv_heads;		/* KV, divides H */
	int hidden;		/* F: gated MLP width */
	int ctx;		/* T: longest context */
	int act;		/* enum vlm_act */
	float era_gamma;	/* ERA: x*s*(1 + gamma*H(s)), s = sigmoid(x/T) */
	float era_temp;
	int tie;		/* lm_head is embed_tokens */
	float norm_eps;		/* RMSNorm epsilon */
	float rope_theta;	/* rotary base */
};

/* tiny, small, medium, large, with vocab_used given (0: 32000). */
int vlm_preset(const char *name, int vocab_used, struct vlm_config *c);
/* Sizes that make a model: positive, heads divide dim, kv_heads divide
 * heads, the head size even, vocab a multiple of 128 >= vocab_used. */
int vlm_config_check(const struct vlm_config *c);
/* Round a tokenizer's size up to the model's vocabulary. */
int vlm_pad_vocab(int vocab_used);
int vlm_act_parse(const char *s, int *act);
const char *vlm_act_name(int act);

/* Compact JSON of every field (malloc'ed), and back; unknown keys and
 * missing keys are errors. */
char *vlm_config_json(const struct vlm_config *c);
int vlm_config_from_json(const char *s, struct vlm_config *c);

/* One tensor of the flat parameter array.  Every backend, the optimizer
 * state and the checkpoint use this order: embed_tokens, then per layer
 * input_layernorm, q, k, v, o, post_attention_layernorm, gate, up, down,
 * then model.norm, then lm_head unless tied. */
struct vlm_tensor {
	char name[64];		/* the Hugging Face name */
	int rows, cols;		/* (out, in); a vector has rows 1 */
	size_t offset;		/* in floats, into the flat array */
	int is_matrix;		/* weight decay applies */
	int layer;		/* -1 outside the blocks */
};

/* The number of tensors, and (when t is not NULL) each one. */
int vlm_layout(const struct vlm_config *c, struct vlm_tensor *t);

/* Parameters in the model (tied head counted once). */
uint64_t vlm_param_count(const struct vlm_config *c);
/* Matrix-product FLOPs a token costs in a forward pass, attention
 * included at context t (6x this per trained token, forward and backward). */
double vlm_flops_per_token(const struct vlm_config *c, int t);

#endif
