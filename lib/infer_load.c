/* infer_load.c: building an inference model from a flat fp32 array or
 * from a checkpoint file, and freeing it. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "infer.h"
#include "safetensors.h"
#include "verr.h"

static void *
own(struct infer_model *m, void *p)
{
	if (p == NULL)
		return NULL;
	if (m->n_own == m->cap_own) {
		int cap = m->cap_own ? 2 * m->cap_own : 64;
		void **o = realloc(m->own, (size_t)cap * sizeof *o);
		if (o == NULL) {
			free(p);
			return NULL;
		}
		m->own = o;
		m->cap_own = cap;
	}
	m->own[m->n_own++] = p;
	return p;
}

void
infer_model_free(struct infer_model *m)
{
	for (int i = 0; i < m->n_own; i++)
		free(m->own[i]);
	free(m->own);
	if (m->file != NULL) {
		st_close(m->file);
		free(m->file);
	}
	memset(m, 0, sizeof *m);
}

size_t
infer_model_bytes(const struct infer_model *m)
{
	size_t b = infer_mat_bytes(&m->head);
	for (int l = 0; l < m->c.layers; l++) {
		const struct infer_layer *y = &m->layer[l];
		b += infer_mat_bytes(&y->wq) + infer_mat_bytes(&y->wk) +
		    infer_mat_bytes(&y->wv) + infer_mat_bytes(&y->wo) +
		    infer_mat_bytes(&y->gate) + infer_mat_bytes(&y->up) +
		    infer_mat_bytes(&y->down);
	}
	return b;
}

/* Common to both ways in: the layer array and the rotary tables. */
static int
model_begin(struct infer_model *m, const struct vlm_config *c)
{
	int err = vlm_config_check(c);
	if (err)
		return err;
	m->c = *c;
	int h2 = c->dim / c->heads / 2;
	size_t n = (size_t)c->ctx * (size_t)h2;
	m->layer = own(m, calloc((size_t)c->layers, sizeof *m->layer));
	m->rope_cos = own(m, malloc(n * sizeof(float)));
	m->rope_sin = own(m, malloc(n * sizeof(float)));
	if (m->layer == NULL || m->rope_cos == NULL || m->rope_sin == NULL)
		return v_error(V_ERR_NOMEM, "model: out of memory");
	/* Angles in double: at position 2000 a float angle has lost about
	 * 1e-4 radian, which shows in the logits. */
	for (int p = 0; p < c->ctx; p++)
		for (int i = 0; i < h2; i++) {
			double f = pow((double)c->rope_theta, -(double)i / h2);
			m->rope_cos[(size_t)p * h2 + i] = (float)cos(p * f);
			m->rope_sin[(size_t)p * h2 + i] = (float)sin(p * f);
		}
	return V_OK;
}

/* Where each named tensor of vlm_layout() goes in the model. */
static int
slot_of(struct infer_model *m, const struct vlm_tensor *t,
    struct infer_mat **mat, const float ***vec)
{
	*mat = NULL;
	*vec = NULL;
	if (t->layer < 0) {
		if (strcmp(t->name, "model.embed_tokens.weight") == 0)
			*mat = &m->embed;
		else if (strcmp(t->name, "lm_head.weight") == 0)
			*mat = &m->head;
		else if (strcmp(t->name, "model.norm.weight") == 0)
			*vec = &m->final_norm;
		else
			return v_error(V_ERR_FORMAT, "unexpected tensor %s", t->name);
		return V_OK;
	}
	struct infer_layer *y = &m->layer[t->layer];
	const char *s = strchr(t->name + strlen("model.layers."), '.');
	static const char *const names[] = { ".input_layernorm.weight",
	    ".post_attention_layernorm.weight", ".self_attn.q_proj.weight",
	    ".self_attn.k_proj.weight", ".self_attn.v_proj.weight",
	    ".self_attn.o_proj.weight", ".mlp.gate_proj.weight",
	    ".mlp.up_proj.weight", ".mlp.down_proj.weight" };
	struct infer_mat *mats[] = { NULL, NULL, &y->wq, &y->wk, &y->wv,
	    &y->wo, &y->gate, &y->up, &y->down };
	const float **vecs[] = { &y->attn_norm, &y->mlp_norm };
	for (int i = 0; s != NULL && i < 9; i++)
		if (strcmp(s, names[i]) == 0) {
			if (i < 2)
				*vec = vecs[i];
			else
				*mat = mats[i];
			return V_OK;
		}
	return v_error(V_ERR_FORMAT, "unexpected tensor %s", t->name);
}

/* The head of a tied model is the embedding; either way only the
 * tokenizer's rows are ever computed. */
static void
model_finish(struct infer_model *m)
{
	if (m->c.tie)
		m->head = m->embed;
	m->head.rows = m->c.vocab_used;
}

int
infer_model_from_flat(struct infer_model *m, const struct vlm_config *c,
    const float *params, int as)
{
	memset(m, 0, sizeof *m);
	int err = model_begin(m, c);
	int nt = vlm_layout(c, NULL);
	struct vlm_tensor *t = malloc((size_t)nt * sizeof *t);

	if (err == V_OK && t == NULL)
		err = v_error(V_ERR_NOMEM, "model: out of memory");
	if (err)
		goto out;
	vlm_layout(c, t);
	for (int i = 0; i < nt && err == V_OK; i++) {
		struct infer_mat *mat;
		const float **vec;
		const float *p = params + t[i].offset;
		if ((err = slot_of(m, &t[i], &mat, &vec)) != V_OK)
			break;
		if (vec != NULL) {
			*vec = p;
			continue;
		}
		mat->rows = t[i].rows;
		mat->cols = t[i].cols;
		mat->type = INFER_F32;
		mat->w = p;
		if (as == INFER_BF16) {
			size_t e = (size_t)t[i].rows * (size_t)t[i].cols;
			uint16_t *h = own(m, malloc(e * sizeof *h));
			if (h == NULL) {
				err = v_error(V_ERR_NOMEM, "model: out of memory");
				break;
			}
			for (size_t j = 0; j < e; j++)
				h[j] = v_f32_to_bf16(p[j]);
			mat->type = INFER_BF16;
			mat->w = h;
		}
	}
	if (err == V_OK) {
		model_finish(m);
		snprintf(m->dtype_name, sizeof m->dtype_name, "%s",
		    as == INFER_BF16 ? "bf16" : "f32");
	}
out:
	free(t);
	if (err)
		infer_model_free(m);
	return err;
}

/* ---- checkpoints ---- */

static int
shape_is(const struct st_tensor *s, int rows, int cols, int matrix)
{
	if (matrix)
		return s->ndim == 2 && s->shape[0] == rows && s->shape[1] == cols;
	return s->ndim == 1 && s->shape[0] == cols;
}

static int
load_vector(struct infer_model *m, const struct st_file *f,
    const struct vlm_tensor *t, const float **vec)
{
	const struct st_tensor *s = st_find(f, t->name);
	if (s == NULL)
		return v_error(V_ERR_FORMAT, "%s: no tensor %s", f->path, t->name);
	if (!shape_is(s, t->rows, t->cols, 0))
		return v_error(V_ERR_MISMATCH, "%s: %s does not have the shape "
		    "(%d) of the configuration", f->path, t->name, t->cols);
	float *v = own(m, malloc((size_t)t->cols * sizeof *v));
	if (v == NULL)
		return v_error(V_ERR_NOMEM, "model: out of memory");
	int err = st_tensor_f32(s, v);
	if (err)
		return v_error(err, "%s: %s: dtype %s is not a float type",
		    f->path, t->name, st_dtype_name(s->dtype));
	*vec = v;
	return V_OK;
}

/* An fp32 or bf16 matrix is used where it lies in the mapping when it is
 * aligned for its type (files Vesper writes always are); anything else is
 * converted to an fp32 copy. */
static int
load_float_matrix(struct infer_model *m, const struct st_file *f,
    const struct st_tensor *s, struct infer_mat *mat)
{
	uintptr_t a = (uintptr_t)s->data;
	if (s->dtype == ST_F32 && a % 4 == 0) {
		mat->type = INFER_F32;
		mat->w = s->data;
		return V_OK;
	}
	if (s->dtype == ST_BF16 && a % 2 == 0) {
		mat->type = INFER_BF16;
		mat->w = s->data;
		return V_OK;
	}
	float *w = own(m, malloc((size_t)s->numel * sizeof *w));
	if (w == NULL)
		return v_error(V_ERR_NOMEM, "model: out of memory");
	int err = st_tensor_f32(s, w);
	if (err)
		return v_error(err, "%s: %s: dtype %s is not a weight type vgen "
		    "reads", f->path, s->name, st_dtype_name(s->dtype));
	mat->type = INFER_F32;
	mat->w = w;
	return V_OK;
}

/* The BF16 "_scale" tensor beside a quantised matrix, as floats. */
static int
load_scale(struct infer_model *m, const struct st_file *f, const char *name,
    int rows, int cols, const float **out)
{
	char sname[96];
	snprintf(sname, sizeof sname, "%s_scale", name);
	const struct st_tensor *s = st_find(f, sname);
	if (s == NULL)
		return v_error(V_ERR_FORMAT, "%s: quantised %s has no %s", f->path,
		    name, sname);
	int ok = cols == 0 ? s->ndim == 1 && s->shape[0] == rows :
	    s->ndim == 2 && s->shape[0] == rows && s->shape[1] == cols;
	if (!ok)
		return v_error(V_ERR_MISMATCH, "%s: %s does not have the shape "
		    "its matrix needs", f->path, sname);
	float *v = own(m, malloc((size_t)s->numel * sizeof *v));
	if (v == NULL)
		return v_error(V_ERR_NOMEM, "model: out of memory");
	int err = st_tensor_f32(s, v);
	if (err)
		return v_error(err, "%s: %s: dtype %s is not a float type",
		    f->path, sname, st_dtype_name(s->dtype));
	for (uint64_t i = 0; i < s->numel; i++)
		if (!isfinite(v[i]))
			return v_error(V_ERR_NUMERIC, "%s: %s holds a NaN or an "
			    "infinity", f->path, sname);
	*out = v;
	return V_OK;
}

/* A matrix by its dtype (vesper-checkpoint(5)): F32/BF16/F16 dense, I8 for
 * INT8 with one scale a row, U8 for INT4 with a scale per group. */
static int
load_matrix(struct infer_model *m, const struct st_file *f,
    const struct vlm_tensor *t, struct infer_mat *mat)
{
	const struct st_tensor *s = st_find(f, t->name);
	if (s == NULL)
		return v_error(V_ERR_FORMAT, "%s: no tensor %s", f->path, t->name);
	mat->rows = t->rows;
	mat->cols = t->cols;
	if (s->dtype == ST_I8) {
		if (!shape_is(s, t->rows, t->cols, 1))
			return v_error(V_ERR_MISMATCH, "%s: INT8 %s does not have "
			    "the shape (%d, %d)", f->path, t->name, t->rows,
			    t->cols);
		mat->type = INFER_Q8;
		mat->w = s->data;
		return load_scale(m, f, t->name, t->rows, 0, &mat->scale);
	}
	if (s->dtype == ST_U8) {
		if (t->cols % 2 != 0 || !shape_is(s, t->rows, t->cols / 2, 1))
			return v_error(V_ERR_MISMATCH, "%s: INT4 %s does not have "
			    "the shape (%d, %d)", f->path, t->name, t->rows,
			    t->cols / 2);
		char sname[96];
		snprintf(sname, sizeof sname, "%s_scale", t->name);
		const struct st_tensor *sc = st_find(f, sname);
		/* The group size is not stored: it is in / (scale columns). */
		int ng = sc != NULL && sc->ndim == 2 && sc->shape[1] > 0 &&
		    sc->shape[1] <= t->cols ? (int)sc->shape[1] : 0;
		if (ng == 0 || t->cols % ng != 0 || (t->cols / ng) % 2 != 0)
			return v_error(V_ERR_MISMATCH, "%s: %s does not give %s "
			    "a group size", f->path, sname, t->name);
		mat->type = INFER_Q4;
		mat->group = t->cols / ng;
		mat->w = s->data;
		return load_scale(m, f, t->name, t->rows, ng, &mat->scale);
	}
	if (!shape_is(s, t->rows, t->cols, 1))
		return v_error(V_ERR_MISMATCH, "%s: %s does not have the shape "
		    "(%d, %d) of the configuration", f->path, t->name, t->rows,
		    t->cols);
	return load_float_matrix(m, f, s, mat);
}

int
infer_model_open(struct infer_model *m, const char *path)
{
	struct vlm_tensor *t = NULL;
	struct vlm_config c;
	int err;

	memset(m, 0, sizeof *m);
	struct st_file *f = calloc(1, sizeof *f);
	if (f == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	if ((err = st_open_checkpoint(f, path)) != V_OK) {
		free(f);
		return err;
	}
	m->file = f;
	if ((err = st_vesper_config(f, &c)) != V_OK)
		goto fail;
	if ((err = model_begin(m, &c)) != V_OK)
		goto fail;
	int nt = vlm_layout(&c, NULL);
	if ((t = malloc((size_t)nt * sizeof *t)) == NULL) {
		err = v_error(V_ERR_NOMEM, "out of memory");
		goto fail;
	}
	vlm_layout(&c, t);
	int nf32 = 0, nbf16 = 0, nq8 = 0, nq4 = 0, group = 0;
	for (int i = 0; i < nt; i++) {
		struct infer_mat *mat;
		const float **vec;
		if ((err = slot_of(m, &t[i], &mat, &vec)) != V_OK)
			goto fail;
		if (vec != NULL)
			err = load_vector(m, f, &t[i], vec);
		else
			err = load_matrix(m, f, &t[i], mat);
		if (err)
			goto fail;
		if (mat != NULL) {
			nf32 += mat->type == INFER_F32;
			nbf16 += mat->type == INFER_BF16;
			nq8 += mat->type == INFER_Q8;
			if (mat->type == INFER_Q4) {
				nq4++;
				if (mat->group > group)
					group = mat->group;
			}
		}
	}
	model_finish(m);
	if (nq4 > 0)
		snprintf(m->dtype_name, sizeof m->dtype_name, "int4-g%d", group);
	else
		snprintf(m->dtype_name, sizeof m->dtype_name, "%s",
		    nq8 > 0 ? "int8" : nbf16 == 0 ? "f32" : nf32 == 0 ? "bf16" :
		    "mixed");
	free(t);
	return V_OK;
fail:
	free(t);
	infer_model_free(m);
	return err;
}
