/* trainer.h: what vtrain asks of a backend.
 *
 * The interface is coarse on purpose (llm.c's shape): a backend holds the
 * whole model, its gradients and the optimizer moments, and runs a whole
 * forward/backward pass or a whole optimizer step in one call.  The CPU
 * backend (lib/, the reference) and the CUDA backend (kernels/, exported
 * through struct v_cuda_api) implement the same table, and tests compare
 * them call by call.
 *
 * Parameters, gradients and moments cross the interface as fp32 arrays in
 * the order of vlm_layout() (lib/vlm_config.h).  Every function returns
 * V_OK or a V_ERR_* value (with a detail through v_error on the CPU, or
 * the backend's last_error on CUDA). */
#ifndef VESPER_TRAINER_H
#define VESPER_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "vlm_config.h"

/* Velvet: AdamW (torch.optim.AdamW exactly when every feature is off) plus
 * optional features, each documented with its formula in vtrain(1). */
struct velvet_hparams {
	float beta1, beta2, eps;	/* 0.9, 0.95, 1e-8 */
	float weight_decay;		/* decoupled: p -= lr*wd*p, matrices only */
	int decay_vectors;		/* also decay norms (off) */
	/* Features, off (0) by default. */
	int entropy_lr;			/* entropy-adaptive learning rate */
	float entropy_lr_k;
	int ppl_momentum;		/* perplexity-guided momentum */
	float ppl_momentum_k;
	int sparse;			/* sparse-aware updates (FlyLoRA) */
	/* Set by the training loop each step for the features above. */
	float batch_entropy;		/* mean next-token entropy, nats */
	float loss_ema;			/* running mean of the loss */
	float batch_loss;		/* this step's mean loss, nats */
};

void velvet_defaults(struct velvet_hparams *h);

struct vlm_trainer_ops {
	const char *name;	/* "cpu", "cuda" */
	/* A model of config c for micro-batches of B sequences of T tokens;
	 * parameters uninitialised until set_params. */
	int (*create)(const struct vlm_config *c, int B, int T, void **st);
	void (*destroy)(void *st);
	int (*set_params)(void *st, const float *p);
	int (*get_params)(void *st, float *p);
	/* The AdamW moments, in parameter order. */
	int (*set_moments)(void *st, const float *m, const float *v);
	int (*get_moments)(void *st, float *m, float *v);
	int (*get_grads)(void *st, float *g);
	int (*zero_grad)(void *st);
	/* tokens: B rows of T+1 ids (inputs are [0, T), targets [1, T+1)).
	 * Adds grad_scale times the gradient of the mean loss to the
	 * gradients; *loss is the mean cross-entropy in nats.  *entropy, when
	 * not NULL, is the mean entropy of the predicted distributions. */
	int (*forward_backward)(void *st, const int32_t *tokens, float grad_scale,
	    float *loss, float *entropy);
	/* The loss alone (evaluation); gradients untouched. */
	int (*forward)(void *st, const int32_t *tokens, float *loss);
	/* The global L2 norm of the gradients. */
	int (*grad_norm)(void *st, float *norm);
	/* One Velvet step at learning rate lr, step t (1-based, for the bias
	 * corrections), on the gradients multiplied by grad_mul (clipping). */
	int (*step)(void *st, const struct velvet_hparams *h, float lr, long t,
	    float grad_mul);
	/* Logits of the last forward pass, (B, T, V), for tests. */
	int (*get_logits)(void *st, float *out);
	/* Replace the gradients (data parallel: the sum over the ranks, made
	 * on the host by lib/dp.h).  NULL: this backend cannot train data
	 * parallel through the host. */
	int (*set_grads)(void *st, const float *g);
	/* Where the gradients live, for a sum on the device (NCCL,
	 * lib/dp.h's dp_nccl_sum): the (P) fp32 gradient array in device
	 * memory and the stream (cudaStream_t) the backend's work runs on.
	 * NULL: gradients cross to the host for the sum (set_grads). */
	int (*device_grads)(void *st, float **grads, void **stream);
};

/* The CPU backend (lib/). */
extern const struct vlm_trainer_ops vlm_cpu_trainer;

#endif
