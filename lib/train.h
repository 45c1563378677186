/* train.h: the pieces of vtrain's loop that are not the model: learning
 * rate schedules, the random generator whose state a checkpoint keeps, the
 * initial weights, and the metrics written as JSON Lines. */
#ifndef VESPER_TRAIN_H
#define VESPER_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "vlm_config.h"
#include "vrng.h"

enum train_schedule { TRAIN_COSINE, TRAIN_LINEAR, TRAIN_CONSTANT };

int train_schedule_parse(const char *s, int *sched);
const char *train_schedule_name(int sched);

/* The learning rate of step t (1-based) of steps: linear warmup from
 * lr/warmup to lr over the first warmup steps, then cosine or linear decay
 * to lr_min at the last step, or constant. */
double train_lr(int sched, double lr, double lr_min, long warmup, long steps,
    long t);


/* GPT-2's initialisation: matrices N(0, 0.02), the projections back into
 * the residual stream (o_proj, down_proj) N(0, 0.02/sqrt(2 L)), norms 1. */
int train_init_params(const struct vlm_config *c, struct v_rng *r,
    float *p);

/* One line of metrics.  val_loss < 0: no evaluation this step (the
 * field is null); mfu < 0: not reported (CPU). */
struct train_metrics {
	long step;
	uint64_t tokens;
	double loss, val_loss, lr, grad_norm, tokens_per_s, elapsed, mfu;
};

int train_metrics_write(FILE *fp, const char *name,
    const struct train_metrics *m);

#endif
