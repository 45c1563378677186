/* velvet.h: the Velvet optimizer on the CPU (and the reference for the
 * fused CUDA kernel).
 *
 * With every feature off it is torch.optim.AdamW, operation for operation:
 *   p <- p * (1 - lr*wd)                 (decoupled decay, first)
 *   m <- m + (1 - b1) * (g - m)          (torch's lerp)
 *   v <- b2 * v + (1 - b2) * g * g
 *   p <- p - lr/(1 - b1^t) * m / (sqrt(v)/sqrt(1 - b2^t) + eps)
 * The features (vtrain(1) gives the formulas) change lr, b1 or skip
 * elements; they are off by default. */
#ifndef VESPER_VELVET_H
#define VESPER_VELVET_H

#include <stddef.h>

#include "trainer.h"

/* The per-step constants, computed once in double as torch does. */
struct velvet_step {
	float lr;		/* after the entropy-adaptive scale */
	float one_minus_b1;	/* after perplexity-guided momentum */
	float b2, one_minus_b2;
	float step_size;	/* lr / (1 - b1^t) */
	float bc2_sqrt;		/* sqrt(1 - b2^t) */
	float eps;
	float grad_mul;		/* clipping */
	int sparse;
};

/* Check h and compute the constants of step t (1-based) at learning rate
 * lr; vocab sizes the entropy scale (ln vocab is the largest entropy). */
int velvet_prepare(const struct velvet_hparams *h, int vocab, float lr,
    long t, float grad_mul, struct velvet_step *s);
/* The entropy-adaptive factor on lr and the first-moment coefficient that
 * the features give (1 and h->beta1 when off). */
double velvet_lr_scale(const struct velvet_hparams *h, int vocab);
double velvet_beta1(const struct velvet_hparams *h);

/* One step over n elements with weight decay wd (0 for vectors). */
void velvet_update(const struct velvet_step *s, float wd, float *p,
    const float *g, float *m, float *v, size_t n);

/* The L2 norm of n values, summed in a fixed order (deterministic). */
double velvet_norm(const float *x, size_t n);
/* torch.nn.utils.clip_grad_norm_'s factor: min(1, clip/(norm + 1e-6));
 * 1 when clip <= 0 (no clipping). */
float velvet_clip_factor(float norm, float clip);

#endif
