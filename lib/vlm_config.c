/* vlm_config.c: presets, checks and the JSON form of the configuration. */
#include <stdio.h>
#include <string.h>

#include "verr.h"
#include "vjson.h"
#include "vlm_config.h"

int
vlm_pad_vocab(int vocab_used)
{
	return (vocab_used + 127) / 128 * 128;
}

static const char *const act_names[] = { "silu", "gelu", "era" };

int
vlm_act_parse(const char *s, int *act)
{
	for (int i = 0; i < 3; i++)
		if (strcmp(s, act_names[i]) == 0) {
			*act = i;
			return V_OK;
		}
	return v_error(V_ERR_ARG, "unknown activation '%s' (silu, gelu or era)", s);
}

const char *
vlm_act_name(int act)
{
	return act >= 0 && act < 3 ? act_names[act] : "?";
}

int
vlm_preset(const char *name, int vocab_used, struct vlm_config *c)
{
	/* name, C, L, H, F, T, tie */
	static const struct { const char *n; int C, L, H, F, T, tie; } p[] = {
		{ "tiny", 128, 4, 4, 352, 256, 0 },	/* ~1-3 M with a 4 k vocab */
		{ "small", 320, 8, 5, 864, 512, 1 },	/* ~20 M with 32 k */
		{ "medium", 768, 12, 12, 2048, 1024, 0 },	/* 134 M with 32 k */
		{ "large", 1024, 24, 16, 2816, 2048, 0 },	/* 374 M with 32 k */
	};
	for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
		if (strcmp(name, p[i].n) != 0)
			continue;
		memset(c, 0, sizeof *c);
		c->vocab_used = vocab_used > 0 ? vocab_used : 32000;
		c->vocab = vlm_pad_vocab(c->vocab_used);
		c->dim = p[i].C;
		c->layers = p[i].L;
		c->heads = c->kv_heads = p[i].H;
		c->hidden = p[i].F;
		c->ctx = p[i].T;
		c->act = VLM_ACT_SILU;
		c->era_gamma = 0.5f;
		c->era_temp = 1.0f;
		c->tie = p[i].tie;
		c->norm_eps = 1e-5f;
		c->rope_theta = 10000.0f;
		return V_OK;
	}
	return v_error(V_ERR_ARG, "unknown preset '%s' (tiny, small, medium, large)",
	    name);
}

int
vlm_config_check(const struct vlm_config *c)
{
	if (c->dim <= 0 || c->layers <= 0 || c->heads <= 0 || c->kv_heads <= 0 ||
	    c->hidden <= 0 || c->ctx <= 0 || c->vocab <= 0 || c->vocab_used <= 0)
		return v_error(V_ERR_ARG, "every model size must be positive");
	if (c->dim > 65536 || c->layers > 1024 || c->hidden > 262144 ||
	    c->ctx > 1 << 20 || c->vocab > 1 << 22)
		return v_error(V_ERR_RANGE, "model sizes beyond what Vesper handles");
	if (c->dim % c->heads != 0)
		return v_error(V_ERR_ARG, "%d heads do not divide width %d", c->heads, c->dim);
	if (c->heads % c->kv_heads != 0)
		return v_error(V_ERR_ARG, "%d key/value heads do not divide %d heads",
		    c->kv_heads, c->heads);
	if ((c->dim / c->heads) % 2 != 0)
		return v_error(V_ERR_ARG, "head size %d is odd (rotary needs pairs)",
		    c->dim / c->heads);
	if (c->vocab % 128 != 0 || c->vocab < c->vocab_used)
		return v_error(V_ERR_ARG, "vocabulary %d is not a multiple of 128 "
		    "holding the tokenizer's %d", c->vocab, c->vocab_used);
	if (c->act < 0 || c->act > 2)
		return v_error(V_ERR_ARG, "unknown activation %d", c->act);
	if (!(c->era_temp > 0) || !(c->norm_eps > 0) || !(c->rope_theta > 0))
		return v_error(V_ERR_ARG, "ERA temperature, norm epsilon and rotary "
		    "base must be positive");
	return V_OK;
}

char *
vlm_config_json(const struct vlm_config *c)
{
	json_t *o = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:s, "
	    "s:f, s:f, s:b, s:f, s:f}",
	    "vocab", c->vocab, "vocab_used", c->vocab_used, "dim", c->dim,
	    "layers", c->layers, "heads", c->heads, "kv_heads", c->kv_heads,
	    "hidden", c->hidden, "ctx", c->ctx, "act", vlm_act_name(c->act),
	    "era_gamma", (double)c->era_gamma, "era_temp", (double)c->era_temp,
	    "tie", c->tie, "norm_eps", (double)c->norm_eps,
	    "rope_theta", (double)c->rope_theta);
	if (o == NULL)
		return NULL;
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return s;
}

int
vlm_config_from_json(const char *s, struct vlm_config *c)
{
	json_t *o;
	json_error_t je;
	const char *act;
	double g, t, e, r;
	int tie;
	int err = v_json_parse(s, strlen(s), "model configuration", 0, &o);

	if (err)
		return err;
	memset(c, 0, sizeof *c);
	if (json_unpack_ex(o, &je, JSON_STRICT,
	    "{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:F, s:F, s:b, s:F, s:F}",
	    "vocab", &c->vocab, "vocab_used", &c->vocab_used, "dim", &c->dim,
	    "layers", &c->layers, "heads", &c->heads, "kv_heads", &c->kv_heads,
	    "hidden", &c->hidden, "ctx", &c->ctx, "act", &act,
	    "era_gamma", &g, "era_temp", &t, "tie", &tie, "norm_eps", &e,
	    "rope_theta", &r) != 0) {
		json_decref(o);
		return v_error(V_ERR_FORMAT, "model configuration: %s", je.text);
	}
	c->era_gamma = (float)g;
	c->era_temp = (float)t;
	c->tie = tie;
	c->norm_eps = (float)e;
	c->rope_theta = (float)r;
	err = vlm_act_parse(act, &c->act);
	json_decref(o);
	return err ? err : vlm_config_check(c);
}

uint64_t
vlm_param_count(const struct vlm_config *c)
{
	uint64_t C = (uint64_t)c->dim, F = (uint64_t)c->hidden;
	uint64_t hd = C / (uint64_t)c->heads;
	uint64_t kv = (uint64_t)c->kv_heads * hd;
	uint64_t block = 2 * C + C * C * 2 + 2 * kv * C + 3 * C * F;
	uint64_t emb = (uint64_t)c->vocab * C;
	return emb * (c->tie ? 1 : 2) + (uint64_t)c->layers * block + C;
}

double
vlm_flops_per_token(const struct vlm_config *c, int t)
{
	double C = c->dim, F = c->hidden, hd = (double)c->dim / c->heads;
	double kv = c->kv_heads * hd;
	double per_layer = 2 * (2 * C * C + 2 * kv * C + 3 * C * F)
	    + 2 * 2 * (double)t * C;	/* QK^T and AV at context t */
	return c->layers * per_layer + 2 * C * c->vocab;
}

static void
put(struct vlm_tensor *t, int *n, size_t *off, int layer, const char *what,
    int rows, int cols, int is_matrix)
{
	if (t != NULL) {
		struct vlm_tensor *x = &t[*n];
		if (layer >= 0)
			snprintf(x->name, sizeof x->name, "model.layers.%d.%s", layer, what);
		else
			snprintf(x->name, sizeof x->name, "%s", what);
		x->rows = rows;
		x->cols = cols;
		x->offset = *off;
		x->is_matrix = is_matrix;
		x->layer = layer;
	}
	*off += (size_t)rows * (size_t)cols;
	(*n)++;
}

int
vlm_layout(const struct vlm_config *c, struct vlm_tensor *t)
{
	int n = 0, C = c->dim, F = c->hidden, hd = c->dim / c->heads;
	int kv = c->kv_heads * hd;
	size_t off = 0;

	put(t, &n, &off, -1, "model.embed_tokens.weight", c->vocab, C, 1);
	for (int l = 0; l < c->layers; l++) {
		put(t, &n, &off, l, "input_layernorm.weight", 1, C, 0);
		put(t, &n, &off, l, "self_attn.q_proj.weight", c->heads * hd, C, 1);
		put(t, &n, &off, l, "self_attn.k_proj.weight", kv, C, 1);
		put(t, &n, &off, l, "self_attn.v_proj.weight", kv, C, 1);
		put(t, &n, &off, l, "self_attn.o_proj.weight", C, c->heads * hd, 1);
		put(t, &n, &off, l, "post_attention_layernorm.weight", 1, C, 0);
		put(t, &n, &off, l, "mlp.gate_proj.weight", F, C, 1);
		put(t, &n, &off, l, "mlp.up_proj.weight", F, C, 1);
		put(t, &n, &off, l, "mlp.down_proj.weight", C, F, 1);
	}
	put(t, &n, &off, -1, "model.norm.weight", 1, C, 0);
	if (!c->tie)
		put(t, &n, &off, -1, "lm_head.weight", c->vocab, C, 1);
	return n;
}
