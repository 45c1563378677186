/* train.c: schedules, the random generator, initial weights, metrics. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"
#include "verr.h"

static const char *const sched_names[] = { "cosine", "linear", "constant" };

int
train_schedule_parse(const char *s, int *sched)
{
	for (int i = 0; i < 3; i++)
		if (strcmp(s, sched_names[i]) == 0) {
			*sched = i;
			return V_OK;
		}
	return v_error(V_ERR_ARG, "unknown schedule '%s' (cosine, linear or "
	    "constant)", s);
}

const char *
train_schedule_name(int sched)
{
	return sched >= 0 && sched < 3 ? sched_names[sched] : "?";
}

double
train_lr(int sched, double lr, double lr_min, long warmup, long steps, long t)
{
	if (warmup > 0 && t <= warmup)
		return lr * (double)t / (double)warmup;
	if (sched == TRAIN_CONSTANT || steps <= warmup)
		return lr;
	double p = (double)(t - warmup) / (double)(steps - warmup);
	if (p > 1)
		p = 1;
	if (sched == TRAIN_LINEAR)
		return lr + (lr_min - lr) * p;
	return lr_min + (lr - lr_min) * 0.5 * (1 + cos(M_PI * p));
}

int
train_init_params(const struct vlm_config *c, struct v_rng *r, float *p)
{
	int n = vlm_layout(c, NULL);
	struct vlm_tensor *t = calloc((size_t)n, sizeof *t);
	double resid = 0.02 / sqrt(2.0 * c->layers);

	if (t == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	vlm_layout(c, t);
	for (int i = 0; i < n; i++) {
		size_t k = (size_t)t[i].rows * (size_t)t[i].cols;
		float *x = p + t[i].offset;
		if (!t[i].is_matrix) {
			for (size_t j = 0; j < k; j++)
				x[j] = 1;
			continue;
		}
		double sd = strstr(t[i].name, "o_proj") || strstr(t[i].name,
		    "down_proj") ? resid : 0.02;
		for (size_t j = 0; j < k; j++)
			x[j] = (float)(sd * v_rng_normal(r));
	}
	free(t);
	return V_OK;
}

/* A number, or null where JSON has no word for it (NaN, infinity). */
static void
put_num(FILE *fp, const char *key, double v)
{
	if (isfinite(v))
		fprintf(fp, ",\"%s\":%.9g", key, v);
	else
		fprintf(fp, ",\"%s\":null", key);
}

int
train_metrics_write(FILE *fp, const char *name, const struct train_metrics *m)
{
	fprintf(fp, "{\"step\":%ld,\"tokens\":%llu", m->step,
	    (unsigned long long)m->tokens);
	put_num(fp, "loss", m->loss);
	put_num(fp, "ppl", exp(m->loss));
	put_num(fp, "val_loss", m->val_loss >= 0 ? m->val_loss : NAN);
	put_num(fp, "val_ppl", m->val_loss >= 0 ? exp(m->val_loss) : NAN);
	put_num(fp, "lr", m->lr);
	put_num(fp, "grad_norm", m->grad_norm);
	put_num(fp, "tokens_per_s", m->tokens_per_s);
	put_num(fp, "elapsed", m->elapsed);
	if (m->mfu >= 0)
		put_num(fp, "mfu", m->mfu);
	fputs("}\n", fp);
	/* Flushed each line: a run killed at any point leaves whole lines. */
	if (fflush(fp) != 0 || ferror(fp))
		return v_error_errno(V_ERR_IO, "%s: write failed", name);
	return V_OK;
}
