/* vtrain.c: train a VesperLM model with Velvet on the shards of vshard.
 *
 * The loop: per step, zero the gradients, run forward/backward over enough
 * micro-batches to make the batch (gradient accumulation), clip by global
 * norm, one Velvet step at the scheduled learning rate; evaluate, log,
 * checkpoint on their own periods.  Everything that decides the next step
 * (weights, moments, step, data position, random state, running loss, the
 * settings) is in a checkpoint, so that a resumed run continues bit for bit.
 *
 * Data parallel (lib/dp.h): under mpirun or srun each rank runs its share of
 * the micro-batches of every step, the gradients are summed over the ranks
 * in a fixed order before clipping and the step, and rank 0 alone
 * evaluates, logs and writes checkpoints.  The global batch, the data
 * position and so the checkpoints are the same whatever the number of
 * ranks, so a run may resume on another number of them. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/backend.h"
#include "../lib/ckpt.h"
#include "../lib/dp.h"
#include "../lib/dp_zero.h"
#include "../lib/shard_reader.h"
#include "../lib/train.h"
#include "../lib/trainer.h"
#include "../lib/velvet.h"
#include "../lib/verr.h"
#include "../lib/vio.h"
#include "../lib/vjson.h"
#include "../lib/vlm_config.h"
#include "../lib/vprogress.h"
#include "cli/cli.h"
#include "../lib/vhash.h"

/* The run's settings: saved in every checkpoint, and taken from it on
 * --resume unless given again. */
struct settings {
	long steps, warmup, stop_at;
	double lr, min_lr, wd, clip;
	int schedule;
	long batch_tokens, micro_batch, seq;
	long eval_every, eval_batches, ckpt_every, keep, log_every;
	long long seed;
	double entropy_lr, ppl_momentum;	/* the features' k; 0 off */
	int sparse;
};

enum { S_STEPS, S_WARMUP, S_LR, S_MIN_LR, S_WD, S_CLIP, S_SCHED, S_BATCH,
	S_MICRO, S_SEQ, S_EVAL, S_EVAL_BATCHES, S_CKPT, S_KEEP, S_LOG, S_SEED,
	S_ENT, S_PPL, S_SPARSE, S_COUNT };

/* Model options, compared with the checkpoint on --resume. */
enum { M_PRESET, M_LAYERS, M_DIM, M_HEADS, M_KV, M_HIDDEN, M_CTX, M_ACT,
	M_TIE, M_GAMMA, M_TEMP, M_COUNT };

/* H100/H200 SXM dense bf16 tensor-core FLOP/s (NVIDIA's data sheets). */
#define VTRAIN_GPU_PEAK 989e12

static volatile sig_atomic_t stop_signal;

/* The run's ranks; a rank that exits early takes the others with it. */
static struct dp dp;

static void
dp_exit(void)
{
	if (!dp.closed)
		dp_abort(&dp, 1);
}

static void
on_stop(int sig)
{
	/* A second signal means now: remove half-written files and die. */
	if (stop_signal) {
		v_atomic_cleanup_all();
		signal(sig, SIG_DFL);
		raise(sig);
	}
	stop_signal = sig;
}

static void
catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static json_t *
settings_json(const struct settings *s)
{
	return json_pack("{s:I, s:I, s:f, s:f, s:f, s:f, s:s, s:I, s:I, s:I, "
	    "s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:b}",
	    "steps", (json_int_t)s->steps, "warmup", (json_int_t)s->warmup,
	    "lr", s->lr, "min_lr", s->min_lr, "weight_decay", s->wd,
	    "clip", s->clip, "schedule", train_schedule_name(s->schedule),
	    "batch_tokens", (json_int_t)s->batch_tokens,
	    "micro_batch", (json_int_t)s->micro_batch, "seq", (json_int_t)s->seq,
	    "eval_every", (json_int_t)s->eval_every,
	    "eval_batches", (json_int_t)s->eval_batches,
	    "ckpt_every", (json_int_t)s->ckpt_every, "keep", (json_int_t)s->keep,
	    "log_every", (json_int_t)s->log_every, "seed", (json_int_t)s->seed,
	    "entropy_lr", s->entropy_lr, "ppl_momentum", s->ppl_momentum,
	    "sparse", s->sparse);
}

/* The checkpoint's settings for every one not given on the command line. */
static int
settings_merge(struct settings *s, const int *given, const json_t *o)
{
	struct settings c;
	json_error_t je;
	json_int_t steps, warmup, bt, mb, seq, ev, eb, ck, keep, lg, seed;
	const char *sched;
	int sparse;

	if (json_unpack_ex((json_t *)o, &je, 0, "{s:I, s:I, s:F, s:F, s:F, s:F, "
	    "s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:F, s:F, s:b}",
	    "steps", &steps, "warmup", &warmup, "lr", &c.lr, "min_lr", &c.min_lr,
	    "weight_decay", &c.wd, "clip", &c.clip, "schedule", &sched,
	    "batch_tokens", &bt, "micro_batch", &mb, "seq", &seq,
	    "eval_every", &ev, "eval_batches", &eb, "ckpt_every", &ck,
	    "keep", &keep, "log_every", &lg, "seed", &seed,
	    "entropy_lr", &c.entropy_lr, "ppl_momentum", &c.ppl_momentum,
	    "sparse", &sparse) != 0)
		return v_error(V_ERR_FORMAT, "cursor.json: settings: %s", je.text);
	if (train_schedule_parse(sched, &c.schedule) != V_OK)
		return v_error(V_ERR_FORMAT, "cursor.json: unknown schedule '%s'", sched);
#define TAKE(k, field, val) if (!given[k]) s->field = (val)
	TAKE(S_STEPS, steps, (long)steps);
	TAKE(S_WARMUP, warmup, (long)warmup);
	TAKE(S_LR, lr, c.lr);
	TAKE(S_MIN_LR, min_lr, c.min_lr);
	TAKE(S_WD, wd, c.wd);
	TAKE(S_CLIP, clip, c.clip);
	TAKE(S_SCHED, schedule, c.schedule);
	TAKE(S_BATCH, batch_tokens, (long)bt);
	TAKE(S_MICRO, micro_batch, (long)mb);
	TAKE(S_SEQ, seq, (long)seq);
	TAKE(S_EVAL, eval_every, (long)ev);
	TAKE(S_EVAL_BATCHES, eval_batches, (long)eb);
	TAKE(S_CKPT, ckpt_every, (long)ck);
	TAKE(S_KEEP, keep, (long)keep);
	TAKE(S_LOG, log_every, (long)lg);
	TAKE(S_SEED, seed, (long long)seed);
	TAKE(S_ENT, entropy_lr, c.entropy_lr);
	TAKE(S_PPL, ppl_momentum, c.ppl_momentum);
	TAKE(S_SPARSE, sparse, sparse);
#undef TAKE
	return V_OK;
}

/* Everything of the loop's state that a checkpoint keeps. */
struct loop {
	long step;
	uint64_t tokens;
	double elapsed;		/* seconds of training before this process */
	struct v_rng rng;
	double loss_ema;	/* < 0 until the first step */
};

static char *
cursor_json(const struct loop *lp, const struct settings *s,
    struct shard_reader *train, const char *device)
{
	char rng[4][17], *data = shard_reader_cursor_json(train), *out = NULL;
	json_t *d = NULL, *o;

	for (int i = 0; i < 4; i++)
		snprintf(rng[i], sizeof rng[i], "%016llx",
		    (unsigned long long)lp->rng.s[i]);
	if (data != NULL)
		v_json_parse(data, strlen(data), "cursor", 0, &d);
	free(data);
	if (d == NULL)
		return NULL;
	o = json_pack("{s:I, s:I, s:f, s:[s,s,s,s], s:f, s:o, s:o, s:s}",
	    "step", (json_int_t)lp->step, "tokens", (json_int_t)lp->tokens,
	    "elapsed", lp->elapsed, "rng", rng[0], rng[1], rng[2], rng[3],
	    "loss_ema", lp->loss_ema, "data", d, "settings", settings_json(s),
	    "device", device);
	if (o != NULL) {
		out = json_dumps(o, JSON_INDENT(1));
		json_decref(o);
	}
	return out;
}

/* Read the loop's state from cursor.json; seeks the reader. */
static int
cursor_restore(const char *text, const char *name, struct loop *lp,
    struct shard_reader *train, json_t **settings)
{
	json_t *o, *data;
	json_error_t je;
	json_int_t step, tokens;
	const char *r[4];
	int err = v_json_parse(text, strlen(text), name, 0, &o);

	if (err)
		return err;
	if (json_unpack_ex(o, &je, 0, "{s:I, s:I, s:F, s:[ssss], s:F, s:o, s:o}",
	    "step", &step, "tokens", &tokens, "elapsed", &lp->elapsed,
	    "rng", &r[0], &r[1], &r[2], &r[3], "loss_ema", &lp->loss_ema,
	    "data", &data, "settings", settings) != 0 || step < 0 || tokens < 0) {
		json_decref(o);
		return v_error(V_ERR_FORMAT, "%s: %s", name, je.text);
	}
	lp->step = (long)step;
	lp->tokens = (uint64_t)tokens;
	for (int i = 0; i < 4; i++) {
		char *end;
		lp->rng.s[i] = strtoull(r[i], &end, 16);
		if (strlen(r[i]) != 16 || *end != '\0') {
			json_decref(o);
			return v_error(V_ERR_FORMAT, "%s: bad random state", name);
		}
	}
	char *d = json_dumps(data, JSON_COMPACT);
	err = d ? shard_reader_restore_json(train, d) : V_ERR_NOMEM;
	if (err) {
		/* v_error rewrites the detail in place: copy it first. */
		char why[512];
		snprintf(why, sizeof why, "%s", v_errmsg(err));
		err = v_error(err, "%s: data position: %s", name, why);
	}
	free(d);
	json_incref(*settings);
	json_decref(o);
	return err;
}

/* The tokenizer's hash as hex, or "" when the shards do not know it. */
static void
hex(const unsigned char *b, size_t n, char *out)
{
	size_t i = 0;

	while (i < n && b[i] == 0)
		i++;
	if (i == n)
		out[0] = '\0';
	else
		v_hex_encode(b, n, out);
}

/* Shapes asked for on the command line against the checkpoint's. */
static void
check_shape(const struct vlm_config *have, const struct vlm_config *want,
    const int *given, const char *path)
{
	static const struct { int opt; const char *what; } f[] = {
		{ M_LAYERS, "layers" }, { M_DIM, "width" }, { M_HEADS, "heads" },
		{ M_KV, "key/value heads" }, { M_HIDDEN, "MLP width" },
		{ M_CTX, "context" }, { M_ACT, "activation" }, { M_TIE, "tied head" },
	};
	int hv[] = { have->layers, have->dim, have->heads, have->kv_heads,
	    have->hidden, have->ctx, have->act, have->tie };
	int wv[] = { want->layers, want->dim, want->heads, want->kv_heads,
	    want->hidden, want->ctx, want->act, want->tie };

	for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
		if ((given[f[i].opt] || given[M_PRESET]) && hv[i] != wv[i])
			cli_die("%s: the checkpoint's model has %s %d, the options ask "
			    "for %d; a resumed run keeps its shape", path, f[i].what,
			    hv[i], wv[i]);
	if ((given[M_GAMMA] && have->era_gamma != want->era_gamma) ||
	    (given[M_TEMP] && have->era_temp != want->era_temp))
		cli_die("%s: the checkpoint's ERA parameters differ from the "
		    "options; a resumed run keeps its model", path);
}

static double
evaluate(const struct vlm_trainer_ops *ops, void *st,
    struct shard_reader *val, int B, int T, long batches, int32_t *buf)
{
	struct shard_cursor start = { 0, 0 };
	double sum = 0;
	float l;
	int err = shard_reader_seek(val, &start);

	/* Always the same first batches of the split: comparable numbers. */
	for (long i = 0; !err && i < batches; i++) {
		err = shard_reader_next_batch(val, B, T, buf);
		if (!err)
			err = ops->forward(st, buf, &l);
		if (!err)
			sum += l;
	}
	if (err)
		cli_fatal(err);
	return sum / batches;
}

/* The options and what was given of them. */
struct opts {
	const char *data, *out, *resume, *init, *metrics, *preset;
	enum v_device device;
	int progress, on_nan_rollback, zero;
	struct vlm_config m;	/* the model fields given */
	int mgiven[M_COUNT];
	struct settings s;
	int sgiven[S_COUNT];
};

static void
parse_options(int argc, char **argv, struct opts *o)
{
	enum { O_DEVICE = 256, O_PRESET, O_LAYERS, O_DIM, O_HEADS, O_KV, O_HIDDEN,
		O_CTX, O_ACT, O_TIE, O_GAMMA, O_TEMP, O_BATCH, O_MICRO, O_SEQ,
		O_STEPS, O_LR, O_MIN_LR, O_WARMUP, O_SCHED, O_WD, O_CLIP, O_EVAL,
		O_EVAL_BATCHES, O_CKPT, O_KEEP, O_LOG, O_METRICS, O_SEED, O_RESUME,
		O_STOP_AT, O_ON_NAN, O_PROGRESS, O_ENT, O_PPL, O_SPARSE, O_INIT,
		O_ZERO };
	static const struct option lo[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "device", required_argument, NULL, O_DEVICE },
		{ "preset", required_argument, NULL, O_PRESET },
		{ "layers", required_argument, NULL, O_LAYERS },
		{ "dim", required_argument, NULL, O_DIM },
		{ "heads", required_argument, NULL, O_HEADS },
		{ "kv-heads", required_argument, NULL, O_KV },
		{ "hidden", required_argument, NULL, O_HIDDEN },
		{ "ctx", required_argument, NULL, O_CTX },
		{ "act", required_argument, NULL, O_ACT },
		{ "tie", no_argument, NULL, O_TIE },
		{ "era-gamma", required_argument, NULL, O_GAMMA },
		{ "era-temp", required_argument, NULL, O_TEMP },
		{ "batch-tokens", required_argument, NULL, O_BATCH },
		{ "micro-batch", required_argument, NULL, O_MICRO },
		{ "seq", required_argument, NULL, O_SEQ },
		{ "steps", required_argument, NULL, O_STEPS },
		{ "lr", required_argument, NULL, O_LR },
		{ "min-lr", required_argument, NULL, O_MIN_LR },
		{ "warmup", required_argument, NULL, O_WARMUP },
		{ "schedule", required_argument, NULL, O_SCHED },
		{ "weight-decay", required_argument, NULL, O_WD },
		{ "clip", required_argument, NULL, O_CLIP },
		{ "eval-every", required_argument, NULL, O_EVAL },
		{ "eval-batches", required_argument, NULL, O_EVAL_BATCHES },
		{ "ckpt-every", required_argument, NULL, O_CKPT },
		{ "keep", required_argument, NULL, O_KEEP },
		{ "log-every", required_argument, NULL, O_LOG },
		{ "metrics", required_argument, NULL, O_METRICS },
		{ "seed", required_argument, NULL, O_SEED },
		{ "resume", required_argument, NULL, O_RESUME },
		{ "init", required_argument, NULL, O_INIT },
		{ "zero", no_argument, NULL, O_ZERO },
		{ "stop-at", required_argument, NULL, O_STOP_AT },
		{ "on-nan", required_argument, NULL, O_ON_NAN },
		{ "progress", no_argument, NULL, O_PROGRESS },
		{ "entropy-lr", required_argument, NULL, O_ENT },
		{ "ppl-momentum", required_argument, NULL, O_PPL },
		{ "sparse", no_argument, NULL, O_SPARSE },
		{ NULL, 0, NULL, 0 }
	};
	struct settings *s = &o->s;
	int c, err;

	memset(o, 0, sizeof *o);
	o->device = V_DEVICE_AUTO;
	o->preset = "tiny";
	*s = (struct settings){
		.steps = 1000, .warmup = -1, .lr = 1e-3, .min_lr = -1, .wd = 0.1,
		.clip = 1.0, .schedule = TRAIN_COSINE, .batch_tokens = 0,
		.micro_batch = 8, .seq = 0, .eval_every = 100, .eval_batches = 8,
		.ckpt_every = 500, .keep = 3, .log_every = 10, .seed = 1,
	};
	/* The model options are listed in the order of M_*. */
	_Static_assert(O_TEMP - O_PRESET == M_TEMP - M_PRESET, "M_* and O_*");
	while ((c = getopt_long(argc, argv, "hd:o:", lo, NULL)) != -1) {
		if (c >= O_PRESET && c <= O_TEMP)
			o->mgiven[c - O_PRESET] = 1;
		switch (c) {
		case 'h':
			cli_help();
		case 'd':
			o->data = optarg;
			break;
		case 'o':
			o->out = optarg;
			break;
		case O_DEVICE:
			if ((err = v_device_parse(optarg, &o->device)) != V_OK)
				cli_bad_usage("--device: %s", v_errmsg(err));
			break;
		case O_PRESET: {
			struct vlm_config check;
			o->preset = optarg;
			if ((err = vlm_preset(optarg, 0, &check)) != V_OK)
				cli_bad_usage("--preset: %s", v_errmsg(err));
			break;
		}
		case O_LAYERS:
			o->m.layers = (int)cli_int("--layers", optarg, 1, 1024);
			break;
		case O_DIM:
			o->m.dim = (int)cli_int("--dim", optarg, 2, 65536);
			break;
		case O_HEADS:
			o->m.heads = (int)cli_int("--heads", optarg, 1, 4096);
			break;
		case O_KV:
			o->m.kv_heads = (int)cli_int("--kv-heads", optarg, 1, 4096);
			break;
		case O_HIDDEN:
			o->m.hidden = (int)cli_int("--hidden", optarg, 1, 262144);
			break;
		case O_CTX:
			o->m.ctx = (int)cli_int("--ctx", optarg, 1, 1 << 20);
			break;
		case O_ACT:
			if ((err = vlm_act_parse(optarg, &o->m.act)) != V_OK)
				cli_bad_usage("--act: %s", v_errmsg(err));
			break;
		case O_TIE:
			o->m.tie = 1;
			break;
		case O_GAMMA:
			o->m.era_gamma = (float)cli_real("--era-gamma", optarg, 0, 100);
			break;
		case O_TEMP:
			o->m.era_temp = (float)cli_real("--era-temp", optarg, 1e-3, 1e3);
			break;
#define SET(k, field, val) s->field = (val); o->sgiven[k] = 1; break
		case O_BATCH:
			SET(S_BATCH, batch_tokens,
			    (long)cli_count("--batch-tokens", optarg, 1, 1ull << 40));
		case O_MICRO:
			SET(S_MICRO, micro_batch, (long)cli_int("--micro-batch", optarg, 1, 1 << 16));
		case O_SEQ:
			SET(S_SEQ, seq, (long)cli_int("--seq", optarg, 1, 1 << 20));
		case O_STEPS:
			SET(S_STEPS, steps, (long)cli_int("--steps", optarg, 1, 1L << 40));
		case O_LR:
			SET(S_LR, lr, cli_real("--lr", optarg, 0, 10));
		case O_MIN_LR:
			SET(S_MIN_LR, min_lr, cli_real("--min-lr", optarg, 0, 10));
		case O_WARMUP:
			SET(S_WARMUP, warmup, (long)cli_int("--warmup", optarg, 0, 1L << 40));
		case O_SCHED:
			if ((err = train_schedule_parse(optarg, &s->schedule)) != V_OK)
				cli_bad_usage("--schedule: %s", v_errmsg(err));
			o->sgiven[S_SCHED] = 1;
			break;
		case O_WD:
			SET(S_WD, wd, cli_real("--weight-decay", optarg, 0, 10));
		case O_CLIP:
			SET(S_CLIP, clip, cli_real("--clip", optarg, 0, 1e9));
		case O_EVAL:
			SET(S_EVAL, eval_every, (long)cli_int("--eval-every", optarg, 0, 1L << 40));
		case O_EVAL_BATCHES:
			SET(S_EVAL_BATCHES, eval_batches,
			    (long)cli_int("--eval-batches", optarg, 1, 1 << 20));
		case O_CKPT:
			SET(S_CKPT, ckpt_every, (long)cli_int("--ckpt-every", optarg, 0, 1L << 40));
		case O_KEEP:
			SET(S_KEEP, keep, (long)cli_int("--keep", optarg, 0, 1 << 20));
		case O_LOG:
			SET(S_LOG, log_every, (long)cli_int("--log-every", optarg, 1, 1L << 40));
		case O_SEED:
			SET(S_SEED, seed, cli_int("--seed", optarg, 0, INT64_MAX));
		case O_ENT:
			SET(S_ENT, entropy_lr, cli_real("--entropy-lr", optarg, 0, 100));
		case O_PPL:
			SET(S_PPL, ppl_momentum, cli_real("--ppl-momentum", optarg, 0, 100));
		case O_SPARSE:
			SET(S_SPARSE, sparse, 1);
#undef SET
		case O_METRICS:
			o->metrics = optarg;
			break;
		case O_RESUME:
			o->resume = optarg;
			break;
		case O_INIT:
			o->init = optarg;
			break;
		case O_ZERO:
			o->zero = 1;
			break;
		case O_STOP_AT:
			s->stop_at = (long)cli_int("--stop-at", optarg, 1, 1L << 40);
			break;
		case O_ON_NAN:
			if (strcmp(optarg, "rollback") == 0)
				o->on_nan_rollback = 1;
			else if (strcmp(optarg, "stop") != 0)
				cli_bad_usage("--on-nan: '%s' is neither stop nor rollback",
				    optarg);
			break;
		case O_PROGRESS:
			o->progress = 1;
			break;
		default:
			cli_usage();
		}
	}
	if (optind != argc)
		cli_bad_usage("unexpected argument '%s'", argv[optind]);
	if (o->resume != NULL && o->init != NULL)
		cli_bad_usage("--resume continues a run, --init starts one: not both");
}

/* The model the options describe: the preset, then each field given. */
static void
model_from_options(const struct opts *o, const struct vlm_config *base,
    struct vlm_config *c)
{
	*c = *base;
	if (o->mgiven[M_PRESET])
		vlm_preset(o->preset, base->vocab_used, c);
	c->vocab_used = base->vocab_used;
	c->vocab = base->vocab;
#define OVER(k, f) if (o->mgiven[k]) c->f = o->m.f
	OVER(M_LAYERS, layers);
	OVER(M_DIM, dim);
	OVER(M_HEADS, heads);
	OVER(M_KV, kv_heads);
	OVER(M_HIDDEN, hidden);
	OVER(M_CTX, ctx);
	OVER(M_ACT, act);
	OVER(M_TIE, tie);
	OVER(M_GAMMA, era_gamma);
	OVER(M_TEMP, era_temp);
#undef OVER
	/* --heads alone keeps the heads ungrouped. */
	if (o->mgiven[M_HEADS] && !o->mgiven[M_KV])
		c->kv_heads = c->heads;
}

int
main(int argc, char **argv)
{
	cli_init("vtrain",
	    "vtrain [-h] [--device auto|cpu|cuda] [options] -d dir -o dir");
	struct opts o;
	struct settings *s = &o.s;
	struct v_backend be;
	int err;

	parse_options(argc, argv, &o);
	if ((err = v_backend_open(o.device, &be)) != V_OK)
		cli_fatal(err);
	if (be.note[0] != '\0')
		cli_warn("%s", be.note);
	if (o.data == NULL || o.out == NULL)
		cli_bad_usage("both -d (the shard directory) and -o (the checkpoint "
		    "directory) are needed");
	cli_signals();
	if ((err = dp_open(&dp)) != V_OK)
		cli_fatal(err);
	atexit(dp_exit);
	static char rank_prog[32];
	if (dp.rank > 0) {
		/* Messages name their rank; the run's report is rank 0's. */
		snprintf(rank_prog, sizeof rank_prog, "vtrain[%d]", dp.rank);
		cli_prog = rank_prog;
	}

	/* The data, and what it says about the tokenizer. */
	struct shard_reader *train, *val;
	if ((err = shard_reader_open(&train, o.data, SHARD_TRAIN)) != V_OK)
		cli_fatal(err);
	if ((err = shard_reader_open(&val, o.data, SHARD_VAL)) != V_OK)
		cli_fatal(err);
	if ((err = shard_reader_set_stride(train, dp.rank, dp.size)) != V_OK)
		cli_fatal(err);
	int vocab = (int)shard_reader_vocab(train);
	char tok[65];
	hex(shard_reader_tokenizer(train), 32, tok);

	struct vlm_config cfg;
	struct loop lp = { .loss_ema = -1 };
	struct ckpt ck = { 0 };
	const char *from = o.resume != NULL ? o.resume : o.init;
	if (from != NULL) {
		if ((err = ckpt_load(from, &ck)) != V_OK)
			cli_fatal(err);
		const char *where = ck.dir != NULL ? ck.dir : from;
		if (o.resume != NULL && ck.m == NULL)
			cli_die("%s: a model file alone cannot resume a run (no "
			    "optimizer state or cursor); --init starts from it", from);
		cfg = ck.cfg;
		struct vlm_config asked;
		model_from_options(&o, &cfg, &asked);
		check_shape(&cfg, &asked, o.mgiven, where);
		if (ck.tokenizer[0] != '\0' && tok[0] != '\0' &&
		    strcmp(ck.tokenizer, tok) != 0)
			cli_die("%s: the checkpoint was trained with tokenizer %.12s..., "
			    "the shards in %s were made with %.12s...", where,
			    ck.tokenizer, o.data, tok);
		if (vocab != cfg.vocab_used)
			cli_die("%s: shards of a %d-token vocabulary, the checkpoint's "
			    "model has %d", o.data, vocab, cfg.vocab_used);
	}
	if (o.init != NULL) {
		/* New run from these weights: fresh moments, step 0. */
		free(ck.m);
		free(ck.v);
		ck.m = ck.v = NULL;
		v_rng_seed(&lp.rng, (uint64_t)s->seed);
	} else if (o.resume != NULL) {
		json_t *sj = NULL;
		err = cursor_restore(ck.cursor, "cursor.json", &lp, train, &sj);
		if (err)
			cli_die("%s: %s", ck.dir, v_errmsg(err));
		err = settings_merge(s, o.sgiven, sj);
		json_decref(sj);
		if (err)
			cli_die("%s: %s", ck.dir, v_errmsg(err));
		if (lp.step != ck.step)
			cli_die("%s: cursor.json says step %ld, the model step %ld",
			    ck.dir, lp.step, ck.step);
	} else {
		struct vlm_config base;
		vlm_preset(o.preset, vocab, &base);
		model_from_options(&o, &base, &cfg);
		if ((err = vlm_config_check(&cfg)) != V_OK)
			cli_bad_usage("%s", v_errmsg(err));
		v_rng_seed(&lp.rng, (uint64_t)s->seed);
	}

	/* Batch geometry. */
	if (s->seq == 0)
		s->seq = cfg.ctx < 256 ? cfg.ctx : 256;
	if (s->seq > cfg.ctx)
		cli_bad_usage("--seq %ld is longer than the model's context %d",
		    s->seq, cfg.ctx);
	long per_micro = s->micro_batch * s->seq;
	if (s->batch_tokens == 0)
		s->batch_tokens = per_micro;
	if (s->batch_tokens % per_micro != 0)
		cli_bad_usage("--batch-tokens %ld is not a multiple of --micro-batch "
		    "x --seq = %ld", s->batch_tokens, per_micro);
	long accum = s->batch_tokens / per_micro;
	if (accum % dp.size != 0)
		cli_bad_usage("--batch-tokens %ld is %ld micro-batches of %ld tokens, "
		    "which %d ranks cannot share evenly", s->batch_tokens, accum,
		    per_micro, dp.size);
	long local = accum / dp.size;	/* this rank's micro-batches per step */
	if (s->warmup < 0)
		s->warmup = s->steps / 20;
	if (s->min_lr < 0)
		s->min_lr = s->lr / 10;
	int B = (int)s->micro_batch, T = (int)s->seq;

	/* The backend. */
	const struct vlm_trainer_ops *ops = &vlm_cpu_trainer;
	if (be.device == V_DEVICE_CUDA) {
		if (be.trainer != NULL)
			ops = be.trainer;	/* errors carry the backend's message */
		else if (o.device == V_DEVICE_CUDA)
			cli_die("the CUDA backend of this build cannot train yet");
		else
			cli_warn("the CUDA backend cannot train yet; using the CPU");
	}
	if (dp.size > 1 && ops != &vlm_cpu_trainer) {
		/* One GPU per rank of a node: the launcher's local rank. */
		const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
		int n = 0;
		if (lr == NULL)
			lr = getenv("SLURM_LOCALID");
		if (lr != NULL && be.cuda->device_count(&n) == 0 && n > 0 &&
		    be.cuda->set_device(atoi(lr) % n) != 0)
			cli_die("cannot select GPU %d: %s", atoi(lr) % n,
			    be.cuda->last_error());
	}
	/* Gradients that live on a GPU are summed there, by NCCL;
	 * VTRAIN_NCCL=1 takes that path with one rank too (a check that it
	 * changes nothing).  Otherwise they cross to the host. */
	int on_device = 0;
	if (ops->device_grads != NULL && (dp.size > 1 || getenv("VTRAIN_NCCL"))) {
		if ((err = dp_nccl_open(&dp)) != V_OK)
			cli_fatal(err);
		on_device = 1;
	} else if (dp.size > 1 && ops->set_grads == NULL) {
		cli_die("the %s backend cannot train data parallel yet", ops->name);
	}
	void *st;
	size_t P = (size_t)vlm_param_count(&cfg);
	float *params = malloc(P * sizeof *params);
	float *mom1 = calloc(P, sizeof *mom1), *mom2 = calloc(P, sizeof *mom2);
	int32_t *batch = malloc(sizeof *batch * (size_t)B * (size_t)(T + 1));
	/* Per step and rank: the micro-batches' losses and entropies, and
	 * whether a signal asks to stop; gathered from every rank. */
	size_t W = 2 * (size_t)local + 1;
	double *mine = malloc(W * sizeof *mine);
	double *every = malloc(W * (size_t)dp.size * sizeof *every);
	/* Micro-batch gradients are each computed alone and added in their
	 * order (dp_sum_add), so that the sum is the same for any number of
	 * ranks.  On the GPU a single process keeps adding on the device. */
	int fold = !on_device &&
	    (dp.size > 1 || (accum > 1 && ops == &vlm_cpu_trainer) || o.zero);
	if (o.zero && (on_device || ops != &vlm_cpu_trainer))
		cli_die("--zero: ZeRO-1 runs on the host, with the CPU backend");
	float *grads = fold ? malloc(P * sizeof *grads) : NULL;
	if (params == NULL || mom1 == NULL || mom2 == NULL || batch == NULL ||
	    mine == NULL || every == NULL || (fold && grads == NULL))
		cli_die("out of memory for %zu parameters", P);
	if ((err = ops->create(&cfg, B, T, &st)) != V_OK)
		cli_fatal(err);
	if (ck.params != NULL) {
		memcpy(params, ck.params, P * sizeof *params);
		if (ck.m != NULL) {
			memcpy(mom1, ck.m, P * sizeof *mom1);
			memcpy(mom2, ck.v, P * sizeof *mom2);
		}
		ckpt_free(&ck);
	} else if ((err = train_init_params(&cfg, &lp.rng, params)) != V_OK) {
		cli_fatal(err);
	}
	/* Every rank computed or read the same state; rank 0's is the one that
	 * counts, so the ranks cannot start apart. */
	if ((err = dp_bcast(&dp, params, P * sizeof *params)) != V_OK ||
	    (err = dp_bcast(&dp, mom1, P * sizeof *mom1)) != V_OK ||
	    (err = dp_bcast(&dp, mom2, P * sizeof *mom2)) != V_OK ||
	    (err = dp_bcast(&dp, &lp, sizeof lp)) != V_OK)
		cli_fatal(err);
	if ((err = ops->set_params(st, params)) != V_OK ||
	    (err = ops->set_moments(st, mom1, mom2)) != V_OK)
		cli_fatal(err);
	/* ZeRO-1: this rank's slice of the moments is the live one; the
	 * backend's own moments and step are not used. */
	struct dp_zero zero = { 0 };
	if (o.zero) {
		if ((err = dp_zero_init(&zero, &dp, &cfg)) != V_OK)
			cli_fatal(err);
		dp_zero_load(&zero, mom1, mom2);
	}
	int have_val = shard_reader_tokens(val) > 0;
	if (!have_val && s->eval_every > 0 && dp.rank == 0)
		cli_warn("%s has no validation split; no evaluation", o.data);

	/* Metrics, appended to across resumed runs. */
	char mpath[4096];
	FILE *mf = NULL;
	if (o.metrics == NULL)
		snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", o.out);
	else
		snprintf(mpath, sizeof mpath, "%s", o.metrics);
	if (dp.rank == 0) {
		if ((err = v_mkdir_p(o.out)) != V_OK)
			cli_fatal(err);
		mf = strcmp(mpath, "-") == 0 ? stdout : fopen(mpath, "a");
		if (mf == NULL)
			cli_die("cannot open %s: %s", mpath, strerror(errno));
	}

	if (dp.rank == 0)
		cli_warn("%s: %llu parameters (%d layers, width %d, %d heads, %d "
		    "key/value, MLP %d, %s%s); batch %ld tokens = %ld x %d x %d; "
		    "steps %ld to %ld", ops == &vlm_cpu_trainer ? "cpu" : be.name,
		    (unsigned long long)P, cfg.layers, cfg.dim, cfg.heads, cfg.kv_heads,
		    cfg.hidden, vlm_act_name(cfg.act), cfg.tie ? ", tied head" : "",
		    s->batch_tokens, accum, B, T,
		    lp.step + 1,
		    s->stop_at && s->stop_at < s->steps ? s->stop_at : s->steps);
	if (dp.rank == 0 && dp.size > 1)
		cli_warn("data parallel: %d ranks (%s, %s), %ld micro-batch%s each "
		    "per step, gradients summed %s%s", dp.size, dp.launcher,
		    dp.mpi->library(), local, local == 1 ? "" : "es",
		    on_device ? "on the GPUs by " : "on the host in a fixed order",
		    on_device ? dp.nccl->version() : "");
	if (dp.rank == 0 && o.zero)
		cli_warn("ZeRO-1: the Velvet moments in %d slices of %zu values",
		    dp.size, zero.unit);

	struct velvet_hparams h;
	velvet_defaults(&h);
	h.weight_decay = (float)s->wd;
	h.entropy_lr = s->entropy_lr > 0;
	h.entropy_lr_k = (float)s->entropy_lr;
	h.ppl_momentum = s->ppl_momentum > 0;
	h.ppl_momentum_k = (float)s->ppl_momentum;
	h.sparse = s->sparse;

	struct v_progress prog;
	char label[160] = "train";
	v_progress_init(&prog, stderr, dp.rank > 0 ? V_PROGRESS_OFF :
	    o.progress ? V_PROGRESS_ON : V_PROGRESS_AUTO,
	    label, "tokens", V_UNIT_ITEMS,
	    (uint64_t)(s->steps - lp.step) * (uint64_t)s->batch_tokens);
	catch_signals();

	const char *fault = getenv("VTRAIN_FAULT_NAN_STEP");
	long fault_step = fault ? atol(fault) : 0;
	long last_ckpt = o.resume != NULL ? lp.step : -1;
	long end = s->stop_at && s->stop_at < s->steps ? s->stop_at : s->steps;
	long nan_retries = 0;
	struct shard_cursor skip = { UINT64_MAX, UINT64_MAX };
	double t0 = v_now(), tlog = t0;
	uint64_t tokens_log = lp.tokens, done = 0;
	int status = 0;

	if (lp.step >= end && dp.rank == 0)
		cli_warn("the checkpoint is at step %ld: nothing to do for %s %ld",
		    lp.step, end < s->steps ? "--stop-at" : "--steps", end);
	while (lp.step < end) {
		long step = lp.step + 1;
		struct shard_cursor at;
		double lsum = 0, esum = 0;
		int stop_now = 0;

		shard_reader_tell(train, &at);
		if (at.epoch == skip.epoch && at.position == skip.position)
			for (long a = 0; a < local; a++)
				if ((err = shard_reader_next_batch(train, B, T, batch)) != V_OK)
					cli_fatal(err);
		shard_reader_tell(train, &at);
		if ((err = ops->zero_grad(st)) != V_OK)
			cli_fatal(err);
		for (long a = 0; a < local; a++) {
			float l, e;
			if ((a > 0 && fold && (err = ops->zero_grad(st)) != V_OK) ||
			    (err = shard_reader_next_batch(train, B, T, batch)) != V_OK ||
			    (err = ops->forward_backward(st, batch, 1.0f / accum, &l,
			    &e)) != V_OK ||
			    (fold && ((err = ops->get_grads(st, grads)) != V_OK ||
			    (err = dp_sum_add(&dp, grads, P)) != V_OK)))
				cli_fatal(err);
			mine[a] = l;
			mine[local + a] = e;
		}
		mine[2 * local] = stop_signal != 0;
		if (fold && !o.zero && ((err = dp_sum_end(&dp, grads, P)) != V_OK ||
		    (err = ops->set_grads(st, grads)) != V_OK))
			cli_fatal(err);
		if (on_device) {
			float *dev;
			void *stream;
			if ((err = ops->device_grads(st, &dev, &stream)) != V_OK ||
			    (err = dp_nccl_sum(&dp, dev, P, stream)) != V_OK)
				cli_fatal(err);
		}
		if ((err = dp_allgather_f64(&dp, mine, every, W)) != V_OK)
			cli_fatal(err);
		/* Micro-batch j of the step is rank j % size's (the reader's
		 * stride): summed in j's order, as one process would. */
		for (long a = 0; a < local; a++)
			for (int r = 0; r < dp.size; r++) {
				lsum += every[(size_t)r * W + (size_t)a];
				esum += every[(size_t)r * W + (size_t)(local + a)];
			}
		for (int r = 0; r < dp.size; r++)
			if (every[(size_t)r * W + 2 * (size_t)local] != 0)
				stop_now = 1;
		double loss = lsum / accum;
		float gnorm;
		if ((err = o.zero ? dp_zero_norm(&dp, &zero, &gnorm) :
		    ops->grad_norm(st, &gnorm)) != V_OK)
			cli_fatal(err);
		if (step == fault_step) {
			loss = NAN;
			fault_step = 0;
		}
		if (!isfinite(loss) || !isfinite(gnorm)) {
			if (!o.on_nan_rollback)
				cli_die("step %ld: the loss is %s (gradient norm %g); stopping "
				    "(--on-nan rollback goes back to the last checkpoint)",
				    step, isnan(loss) ? "NaN" : isfinite(loss) ? "finite but "
				    "the gradient is not" : "infinite", (double)gnorm);
			if (last_ckpt < 0)
				cli_die("step %ld: the loss is not finite and there is no "
				    "checkpoint to go back to", step);
			if (++nan_retries > 3)
				cli_die("step %ld: the loss is still not finite after 3 "
				    "rollbacks; stopping", step);
			json_t *sj = NULL;
			if ((err = ckpt_load(o.out, &ck)) != V_OK)
				cli_fatal(err);
			skip = at;
			if ((err = cursor_restore(ck.cursor, "cursor.json", &lp, train,
			    &sj)) != V_OK)
				cli_fatal(err);
			json_decref(sj);
			if ((err = ops->set_params(st, ck.params)) != V_OK ||
			    (err = ops->set_moments(st, ck.m, ck.v)) != V_OK)
				cli_fatal(err);
			if (o.zero) {
				memcpy(params, ck.params, P * sizeof *params);
				dp_zero_load(&zero, ck.m, ck.v);
			}
			if (dp.rank == 0)
				cli_warn("step %ld: the loss is not finite; back to step %ld, "
				    "skipping the batch at token %llu", step, lp.step,
				    (unsigned long long)at.position);
			ckpt_free(&ck);
			continue;
		}
		h.batch_entropy = (float)(esum / accum);
		h.batch_loss = (float)loss;
		h.loss_ema = (float)(lp.loss_ema < 0 ? loss : lp.loss_ema);
		double lr = train_lr(s->schedule, s->lr, s->min_lr, s->warmup,
		    s->steps, step);
		float clipf = velvet_clip_factor(gnorm, (float)s->clip);
		if (o.zero)
			err = dp_zero_step(&dp, &zero, &h, (float)lr, step, clipf, params);
		else
			err = ops->step(st, &h, (float)lr, step, clipf);
		if (err || (o.zero && (err = ops->set_params(st, params)) != V_OK))
			cli_fatal(err);
		lp.loss_ema = lp.loss_ema < 0 ? loss : 0.99 * lp.loss_ema + 0.01 * loss;
		lp.step = step;
		lp.tokens += (uint64_t)s->batch_tokens;
		done += (uint64_t)s->batch_tokens;

		int last = step == end;
		double val_loss = -1;
		if (dp.rank == 0 && have_val && s->eval_every > 0 &&
		    (step % s->eval_every == 0 || last))
			val_loss = evaluate(ops, st, val, B, T, s->eval_batches, batch);
		if (dp.rank == 0 && (step % s->log_every == 0 || last ||
		    val_loss >= 0)) {
			double now = v_now();
			struct train_metrics m = {
				.step = step, .tokens = lp.tokens, .loss = loss,
				.val_loss = val_loss, .lr = lr, .grad_norm = gnorm,
				.tokens_per_s = (double)(lp.tokens - tokens_log) /
				    (now - tlog > 0 ? now - tlog : 1e-9),
				.elapsed = lp.elapsed + now - t0, .mfu = -1,
			};
			/* Model FLOPs utilisation against a Hopper's dense bf16
			 * peak: forward and backward are 3 forward passes. */
			if (ops != &vlm_cpu_trainer)
				m.mfu = 3 * vlm_flops_per_token(&cfg, T) * m.tokens_per_s /
				    VTRAIN_GPU_PEAK;
			if ((err = train_metrics_write(mf, mpath, &m)) != V_OK)
				cli_fatal(err);
			tlog = now;
			tokens_log = lp.tokens;
		}
		snprintf(label, sizeof label, "step %ld/%ld loss %.4f", step,
		    s->steps, loss);
		v_progress_update(&prog, done);

		int save = (s->ckpt_every > 0 && step % s->ckpt_every == 0) ||
		    last || stop_now;
		/* ZeRO-1: every rank sends its slice of the moments to rank 0's
		 * whole copy (the parameters are whole on every rank). */
		if (save && o.zero &&
		    (err = dp_zero_gather(&dp, &zero, mom1, mom2)) != V_OK)
			cli_fatal(err);
		if (save && dp.rank == 0) {
			if (!o.zero && ((err = ops->get_params(st, params)) != V_OK ||
			    (err = ops->get_moments(st, mom1, mom2)) != V_OK))
				cli_fatal(err);
			double el = lp.elapsed;
			lp.elapsed += v_now() - t0;
			char *cur = cursor_json(&lp, s, train, ops->name);
			lp.elapsed = el;
			if (cur == NULL)
				cli_die("out of memory");
			err = ckpt_save(o.out, &cfg, tok, step, params, mom1, mom2, cur,
			    (int)s->keep);
			free(cur);
			if (err)
				cli_fatal(err);
		}
		if (save) {
			last_ckpt = step;
			nan_retries = 0;
		}
		if (stop_now) {
			v_progress_finish(&prog);
			if (dp.rank == 0)
				cli_warn("%s at step %ld; checkpoint written to %s/latest",
				    stop_signal ? strsignal(stop_signal) :
				    "another rank was signalled", step, o.out);
			status = 1;
			break;
		}
	}
	if (status == 0) {
		v_progress_finish(&prog);
		if (end < s->steps && lp.step == end && dp.rank == 0)
			cli_warn("stopped after step %ld of %ld as asked (--stop-at); "
			    "resume with --resume %s/latest", end, s->steps, o.out);
	}
	if (mf != NULL && mf != stdout && fclose(mf) != 0)
		cli_die("%s: write failed", mpath);
	/* Every rank has passed its last collective; rank 0's checkpoint is
	 * on disk before any rank reports success. */
	if ((err = dp_barrier(&dp)) != V_OK)
		cli_fatal(err);
	dp_close(&dp);
	ops->destroy(st);
	shard_reader_close(train);
	shard_reader_close(val);
	free(params);
	free(mom1);
	free(mom2);
	free(batch);
	free(mine);
	free(every);
	free(grads);
	dp_zero_free(&zero);
	return cli_exit_status(status);
}
