/* vgen.c: generate text with a VesperLM model.
 *
 * One prompt (from -p or standard input), many (--batch, one a line), or a
 * dialogue (--chat).  Each sequence is a "job": a key/value cache, the
 * tokens in it, a sampler and an emitter that streams the text.  A job
 * alternates between "feed tokens" (the model step) and "pick a token"
 * (sampling, stop rules, output), so that single, batched and chat runs
 * share the same code. */
#include <getopt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <editline/readline.h>

#include "../lib/backend.h"
#include "../lib/infer.h"
#include "../lib/safetensors.h"
#include "../lib/sample.h"
#include "../lib/tok.h"
#include "../lib/verr.h"
#include "../lib/vio.h"
#include "cli/cli.h"

#define PREFILL_CHUNK 64	/* prompt tokens per model step */
#define BATCH_WIDTH 16		/* sequences decoded together by --batch */
#define CONF_LOW 0.3f		/* p below this: a low-confidence token */
#define SATISFICE_WINDOW 8	/* tokens in the windowed mean */
#define MAX_STOPS 16

/* ---- options and the things every job shares ---- */

struct gen {
	struct infer_model m;
	struct tok *tok;
	struct tok_enc *enc;
	struct infer_work w;
	int vocab;			/* the tokenizer's, = vocab_used */
	int ctx;
	/* options */
	struct sample_params sp;
	uint64_t seed;
	int max_tokens;
	const char *stops[MAX_STOPS];
	int n_stops;
	int chat;
	int batch;
	double satisfice;		/* 0: off */
	int conf;			/* --confidence given */
	int colour;			/* confidence as colour on stdout */
	FILE *conf_fp;			/* JSON Lines, or NULL */
};

/* ---- output: stop strings and UTF-8 held back, one flush a token ---- */

struct emit {
	FILE *out;
	const char *const *stops;
	int n_stops;
	int colour;
	struct tok_buf pend;		/* decoded, not yet written */
	struct tok_buf text;		/* all the answer's bytes so far */
	int stopped;
	int lstrip;		/* drop the answer's leading spaces */
	int err;
};

static int
buf_add(struct tok_buf *b, const void *p, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->n + n + 1)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (q == NULL)
			return v_error(V_ERR_NOMEM, "out of memory");
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
	b->p[b->n] = '\0';
	return V_OK;
}

/* Where needle first occurs in hay, or NULL (memmem is not C11). */
static const char *
find_bytes(const char *hay, size_t n, const char *needle, size_t k)
{
	for (size_t i = 0; k <= n && i <= n - k; i++)
		if (memcmp(hay + i, needle, k) == 0)
			return hay + i;
	return NULL;
}

static void
emit_write(struct emit *e, const char *p, size_t n, const char *colour)
{
	if (n == 0 || e->err)
		return;
	if (colour != NULL && e->colour)
		fputs(colour, e->out);
	if (fwrite(p, 1, n, e->out) != n)
		e->err = v_error_errno(V_ERR_IO, "standard output");
	if (colour != NULL && e->colour)
		fputs("\033[0m", e->out);
}

/* Append a token's bytes; write what can no longer be part of a stop
 * string nor of an unfinished character.  Returns 1 when a stop string
 * has appeared (the text before it is written, the rest dropped). */
static int
emit_token(struct emit *e, const unsigned char *b, size_t n,
    const char *colour)
{
	if (e->lstrip && e->text.n == 0)
		while (n > 0 && *b == ' ') {
			b++;
			n--;
		}
	if (buf_add(&e->pend, b, n) || buf_add(&e->text, b, n)) {
		e->err = V_ERR_NOMEM;
		return 1;
	}
	const char *p = e->pend.p;
	size_t len = e->pend.n, cut = len, hold = 0;
	for (int i = 0; i < e->n_stops; i++) {
		size_t sl = strlen(e->stops[i]);
		const char *at = find_bytes(p, len, e->stops[i], sl);
		if (at != NULL && (size_t)(at - p) < cut)
			cut = (size_t)(at - p);
		/* The longest end of pend that begins this stop string. */
		for (size_t k = sl - 1 < len ? sl - 1 : len; k > hold; k--)
			if (memcmp(p + len - k, e->stops[i], k) == 0) {
				hold = k;
				break;
			}
	}
	if (cut < len) {
		emit_write(e, p, cut, colour);
		e->pend.n = 0;
		e->stopped = 1;
		fflush(e->out);
		return 1;
	}
	size_t safe = tok_utf8_complete((const unsigned char *)p, len - hold);
	emit_write(e, p, safe, colour);
	memmove(e->pend.p, p + safe, len - safe);
	e->pend.n = len - safe;
	if (fflush(e->out) != 0 && !e->err)
		e->err = v_error_errno(V_ERR_IO, "standard output");
	return 0;
}

static void
emit_finish(struct emit *e)
{
	emit_write(e, e->pend.p, e->pend.n, NULL);
	e->pend.n = 0;
	fflush(e->out);
}

static void
emit_free(struct emit *e)
{
	tok_buf_free(&e->pend);
	tok_buf_free(&e->text);
}

/* ---- confidence: JSON Lines of each token, spans and a summary ---- */

/* A JSON string of raw bytes: valid UTF-8 passes, bytes that are not part
 * of a whole character (a token may end inside one) become U+FFFD. */
/* The length of the well-formed UTF-8 character at s[0..n) (RFC 3629: no
 * overlong forms, no surrogates, nothing past U+10FFFF), or 0. */
static size_t
utf8_char(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len = c < 0x80 ? 1 : c >= 0xc2 && c < 0xe0 ? 2 :
	    c >= 0xe0 && c < 0xf0 ? 3 : c >= 0xf0 && c < 0xf5 ? 4 : 0;
	if (len == 0 || len > n)
		return 0;
	uint32_t cp = len == 1 ? c : c & (0x7f >> len);
	for (size_t k = 1; k < len; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[k] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

/* A JSON string of raw bytes: whole characters pass, bytes that are not
 * part of one (a token may end inside a character) become U+FFFD. */
static void
json_bytes(FILE *fp, const unsigned char *s, size_t n)
{
	fputc('"', fp);
	for (size_t i = 0; i < n;) {
		unsigned c = s[i];
		size_t len = utf8_char(s + i, n - i);
		if (len == 0) {
			fputs("\\ufffd", fp);
			i++;
			continue;
		}
		if (c == '"' || c == '\\')
			fprintf(fp, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", fp);
		else if (c == '\t')
			fputs("\\t", fp);
		else if (c < 0x20 || c == 0x7f)
			fprintf(fp, "\\u%04x", c);
		else
			fwrite(s + i, 1, len, fp);
		i += len;
	}
	fputc('"', fp);
}

struct conf {
	FILE *fp;		/* JSON Lines here, or NULL */
	long seq;		/* the prompt's number in --batch, else -1 */
	int n;			/* tokens so far */
	double sum_p, sum_h;
	float win[SATISFICE_WINDOW];
	/* The low-confidence span being built. */
	int span_from;		/* -1: none open */
	double span_sum;
	float span_min;
	struct tok_buf span_text;
	int n_spans;
};

static void
conf_init(struct conf *c, FILE *fp, long seq)
{
	memset(c, 0, sizeof *c);
	c->fp = fp;
	c->seq = seq;
	c->span_from = -1;
}

static void
conf_prefix(struct conf *c, const char *type)
{
	fprintf(c->fp, "{\"type\":\"%s\"", type);
	if (c->seq >= 0)
		fprintf(c->fp, ",\"prompt\":%ld", c->seq);
}

static void
conf_close_span(struct conf *c)
{
	if (c->span_from < 0)
		return;
	if (c->fp != NULL) {
		int len = c->n - c->span_from;
		conf_prefix(c, "low_span");
		fprintf(c->fp, ",\"from\":%d,\"to\":%d,\"mean_p\":%.4f,"
		    "\"min_p\":%.4f,\"text\":", c->span_from, c->n,
		    c->span_sum / len, (double)c->span_min);
		json_bytes(c->fp, (unsigned char *)c->span_text.p,
		    c->span_text.n);
		fputs("}\n", c->fp);
	}
	c->n_spans++;
	c->span_from = -1;
	c->span_text.n = 0;
}

static void
conf_token(struct conf *c, int id, const unsigned char *b, size_t n, float p,
    float h)
{
	if (c->fp != NULL) {
		conf_prefix(c, "token");
		fprintf(c->fp, ",\"i\":%d,\"id\":%d,\"text\":", c->n, id);
		json_bytes(c->fp, b, n);
		fprintf(c->fp, ",\"p\":%.4f,\"entropy\":%.4f,\"low\":%s}\n",
		    (double)p, (double)h, p < CONF_LOW ? "true" : "false");
	}
	if (p < CONF_LOW) {
		if (c->span_from < 0) {
			c->span_from = c->n;
			c->span_sum = 0;
			c->span_min = 1;
		}
		c->span_sum += p;
		if (p < c->span_min)
			c->span_min = p;
		buf_add(&c->span_text, b, n);
	} else {
		conf_close_span(c);
	}
	c->win[c->n % SATISFICE_WINDOW] = p;
	c->n++;
	c->sum_p += p;
	c->sum_h += h;
}

/* The mean p of the last SATISFICE_WINDOW tokens (fewer at the start). */
static double
conf_window(const struct conf *c)
{
	int k = c->n < SATISFICE_WINDOW ? c->n : SATISFICE_WINDOW;
	double s = 0;
	for (int i = 0; i < k; i++)
		s += c->win[i];
	return k ? s / k : 0;
}

static void
conf_finish(struct conf *c, const char *why)
{
	conf_close_span(c);
	if (c->fp != NULL) {
		conf_prefix(c, "summary");
		fprintf(c->fp, ",\"tokens\":%d,\"mean_p\":%.4f,"
		    "\"mean_entropy\":%.4f,\"low_spans\":%d,\"stop\":\"%s\"}\n",
		    c->n, c->n ? c->sum_p / c->n : 0.0,
		    c->n ? c->sum_h / c->n : 0.0, c->n_spans, why);
		fflush(c->fp);
	}
	tok_buf_free(&c->span_text);
}

/* ---- a sequence: its cache and the tokens in it ---- */

struct seq {
	struct infer_state st;
	int *tok;		/* (cap) the tokens in the cache, in order */
	int n;
	float *logits;		/* (vocab) after the last token fed */
};

static int
seq_init(struct gen *g, struct seq *s, int cap)
{
	memset(s, 0, sizeof *s);
	int err = infer_state_init(&s->st, &g->m, cap);
	if (err)
		return err;
	s->tok = malloc((size_t)cap * sizeof *s->tok);
	s->logits = malloc((size_t)g->m.c.vocab_used * sizeof *s->logits);
	if (s->tok == NULL || s->logits == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	return V_OK;
}

static void
seq_free(struct seq *s)
{
	infer_state_free(&s->st);
	free(s->tok);
	free(s->logits);
	memset(s, 0, sizeof *s);
}

/* Feed ids into s's cache in chunks; logits for the last one. */
static int
seq_feed(struct gen *g, struct seq *s, const int *ids, int n)
{
	struct infer_slot sl[PREFILL_CHUNK];
	if (s->n + n > s->st.cap)
		return v_error(V_ERR_RANGE, "the context of %d tokens is full",
		    s->st.cap);
	for (int i = 0; i < n; i += PREFILL_CHUNK) {
		int k = n - i < PREFILL_CHUNK ? n - i : PREFILL_CHUNK;
		for (int j = 0; j < k; j++) {
			sl[j] = (struct infer_slot){ &s->st, ids[i + j], s->n,
			    i + j == n - 1 ? s->logits : NULL };
			s->tok[s->n++] = ids[i + j];
		}
		int err = infer_step(&g->m, &g->w, sl, k);
		if (err)
			return err;
	}
	return V_OK;
}

/* ---- a job: one answer being generated ---- */

enum { JOB_RUN, JOB_EOS, JOB_STOP, JOB_MAX, JOB_FULL, JOB_SATISFICED,
    JOB_TURN, JOB_ERR };
static const char *const job_why[] = { "running", "eos", "stop_string",
    "max_tokens", "context_full", "satisficed", "end_of_turn", "error" };

struct job {
	struct seq s;
	struct sampler smp;
	struct emit e;
	struct conf c;
	int made;		/* tokens generated */
	int next;		/* the token to feed next */
	int state;
};

/* After the model step: pick the next token and decide whether to go on. */
static void
job_pick(struct gen *g, struct job *j)
{
	int t = sampler_pick(&j->smp, j->s.logits, j->s.tok, j->s.n);
	float p = 0, h = 0;
	if (g->conf || g->satisfice > 0)
		sample_confidence(j->s.logits, g->vocab, t, &p, &h);
	if (t == TOK_EOS) {
		j->state = JOB_EOS;
		return;
	}
	/* A new speaker's tag ends the answer in a dialogue. */
	if (g->chat && t >= TOK_SPEAKER_1 && t < TOK_SPEAKER_1 + TOK_SPEAKERS) {
		j->state = JOB_TURN;
		return;
	}
	size_t n;
	const unsigned char *b = tok_token_bytes(g->tok, (uint32_t)t, &n);
	/* In a dialogue and in --batch (one answer a line) a newline ends
	 * the answer: the Claire format puts each turn on a line. */
	if (g->chat || g->batch) {
		const unsigned char *nl = memchr(b, '\n', n);
		if (nl != NULL) {
			emit_token(&j->e, b, (size_t)(nl - b), NULL);
			j->state = JOB_TURN;
			return;
		}
	}
	const char *colour = NULL;
	if (g->colour)
		colour = p < CONF_LOW ? "\033[31m" : p < 0.7f ? "\033[33m" :
		    NULL;
	int stop = emit_token(&j->e, b, n, colour);
	if (g->conf || g->satisfice > 0)
		conf_token(&j->c, t, b, n, p, h);
	j->made++;
	if (j->e.err) {
		j->state = JOB_ERR;
		return;
	}
	if (stop) {
		j->state = JOB_STOP;
		return;
	}
	if (g->satisfice > 0 && j->e.text.n > 0) {
		/* A sentence ends with . ! ? or an ellipsis, perhaps followed
		 * by closing quotes or spaces. */
		const char *q = j->e.text.p + j->e.text.n;
		while (q > j->e.text.p && strchr(" \t\"'»)", q[-1]) != NULL)
			q--;
		size_t k = (size_t)(q - j->e.text.p);
		int end = k > 0 && strchr(".!?", q[-1]) != NULL;
		end |= k >= 3 && memcmp(q - 3, "\xe2\x80\xa6", 3) == 0;
		if (end && conf_window(&j->c) >= g->satisfice) {
			j->state = JOB_SATISFICED;
			return;
		}
	}
	if (j->made >= g->max_tokens) {
		j->state = JOB_MAX;
		return;
	}
	if (j->s.n >= j->s.st.cap) {
		j->state = JOB_FULL;
		return;
	}
	j->next = t;
}

static void
job_setup(struct gen *g, struct job *j, FILE *out, uint64_t seed, long seqno)
{
	memset(&j->e, 0, sizeof j->e);
	j->e.out = out;
	j->e.stops = g->stops;
	j->e.n_stops = g->n_stops;
	j->e.colour = g->colour;
	conf_init(&j->c, g->conf_fp, seqno);
	j->made = 0;
	j->state = JOB_RUN;
	sampler_free(&j->smp);
	int err = sampler_init(&j->smp, &g->sp, g->vocab, seed);
	if (err)
		cli_fatal(err);
}

/* ---- prompts ---- */

/* <bos> and the prompt's ids; a prompt too long for the context keeps its
 * end (what the answer follows from), leaving room to answer. */
static int *
prompt_ids(struct gen *g, const char *text, size_t len, int *n)
{
	struct tok_ids ids = { 0 };
	int err = tok_encode(g->enc, text, len, &ids, NULL);
	if (err)
		cli_fatal(err);
	int room = g->ctx - (g->max_tokens < g->ctx / 2 ? g->max_tokens :
	    g->ctx / 2);
	size_t from = 0;
	if (ids.n + 1 > (size_t)room) {
		from = ids.n + 1 - (size_t)room;
		cli_warn("the prompt's %zu tokens do not fit the context of %d: "
		    "keeping the last %zu", ids.n, g->ctx, ids.n - from);
	}
	int *p = malloc((ids.n - from + 1) * sizeof *p);
	if (p == NULL)
		cli_fatal(v_error(V_ERR_NOMEM, "out of memory"));
	p[0] = TOK_BOS;
	for (size_t i = from; i < ids.n; i++)
		p[1 + i - from] = (int)ids.v[i];
	*n = (int)(ids.n - from + 1);
	tok_ids_free(&ids);
	return p;
}

static int
cache_cap(struct gen *g, int n_prompt)
{
	long cap = (long)n_prompt + g->max_tokens + 1;
	return cap > g->ctx ? g->ctx : (int)cap;
}

static void
report_end(struct gen *g, struct job *j)
{
	if (j->state == JOB_FULL && !g->chat)
		cli_warn("stopped: the context of %d tokens is full", g->ctx);
	/* The summary goes on a line of its own on the terminal. */
	if (g->colour && !g->chat && j->e.text.n > 0 &&
	    j->e.text.p[j->e.text.n - 1] != '\n') {
		putchar('\n');
		fflush(stdout);
	}
	if (g->colour)
		fprintf(stderr, "%s: %d tokens, mean p %.2f, %d low-confidence "
		    "span%s (red)\n", cli_prog, j->c.n,
		    j->c.n ? j->c.sum_p / j->c.n : 0.0, j->c.n_spans,
		    j->c.n_spans == 1 ? "" : "s");
}

/* One prompt, streamed to stdout. */
static void
run_single(struct gen *g, const char *text, size_t len)
{
	int n;
	int *ids = prompt_ids(g, text, len, &n);
	struct job j;
	memset(&j, 0, sizeof j);
	int err = seq_init(g, &j.s, cache_cap(g, n));
	if (err == V_OK)
		err = seq_feed(g, &j.s, ids, n);
	if (err)
		cli_fatal(err);
	free(ids);
	job_setup(g, &j, stdout, g->seed, -1);
	for (;;) {
		job_pick(g, &j);
		if (j.state != JOB_RUN)
			break;
		if ((err = seq_feed(g, &j.s, &j.next, 1)) != V_OK)
			cli_fatal(err);
	}
	emit_finish(&j.e);
	if (j.e.err)
		cli_fatal(j.e.err);
	conf_finish(&j.c, job_why[j.state]);
	report_end(g, &j);
	emit_free(&j.e);
	sampler_free(&j.smp);
	seq_free(&j.s);
}

/* ---- --batch: one prompt a line, BATCH_WIDTH decoded together ---- */

struct bjob {
	struct job j;
	long line;
	char *out;		/* the answer, from open_memstream */
	size_t out_len;
	FILE *mem;
	int live;
};

static int
read_line(FILE *fp, char **line, size_t *cap, size_t *len)
{
	ssize_t n = getline(line, cap, fp);
	if (n < 0) {
		if (ferror(fp))
			cli_fatal(v_error_errno(V_ERR_IO, "standard input"));
		return 0;
	}
	if (n > 0 && (*line)[n - 1] == '\n')
		(*line)[--n] = '\0';
	*len = (size_t)n;
	return 1;
}

static void
run_batch(struct gen *g, FILE *in)
{
	struct bjob b[BATCH_WIDTH];
	char *line = NULL;
	size_t cap = 0, len;
	long next_line = 0, next_out = 0;
	int eof = 0;
	/* Answers finished out of order wait here until their turn. */
	char **done = NULL;
	size_t *done_len = NULL;
	long done_cap = 0;

	memset(b, 0, sizeof b);
	for (;;) {
		/* Fill free places with new prompts, each prefilled alone. */
		for (int i = 0; i < BATCH_WIDTH && !eof; i++) {
			if (b[i].live)
				continue;
			if (!read_line(in, &line, &cap, &len)) {
				eof = 1;
				break;
			}
			int n;
			int *ids = prompt_ids(g, line, len, &n);
			struct bjob *x = &b[i];
			seq_free(&x->j.s);
			int err = seq_init(g, &x->j.s, cache_cap(g, n));
			if (err == V_OK)
				err = seq_feed(g, &x->j.s, ids, n);
			if (err)
				cli_fatal(err);
			free(ids);
			x->line = next_line++;
			x->mem = open_memstream(&x->out, &x->out_len);
			if (x->mem == NULL)
				cli_fatal(v_error_errno(V_ERR_NOMEM, "memstream"));
			/* Seeded by the line's number, so that an answer does
			 * not depend on its neighbours in the batch. */
			job_setup(g, &x->j, x->mem, g->seed + (uint64_t)x->line,
			    x->line);
			x->live = 1;
			job_pick(g, &x->j);
		}
		/* Finished jobs: keep their answers until their turn. */
		int live = 0;
		for (int i = 0; i < BATCH_WIDTH; i++) {
			struct bjob *x = &b[i];
			if (!x->live)
				continue;
			if (x->j.state == JOB_RUN) {
				live++;
				continue;
			}
			emit_finish(&x->j.e);
			conf_finish(&x->j.c, job_why[x->j.state]);
			emit_free(&x->j.e);
			fclose(x->mem);
			if (x->line >= done_cap) {
				long nc = done_cap ? done_cap * 2 : 64;
				while (nc <= x->line)
					nc *= 2;
				done = realloc(done, (size_t)nc * sizeof *done);
				done_len = realloc(done_len, (size_t)nc *
				    sizeof *done_len);
				if (done == NULL || done_len == NULL)
					cli_fatal(v_error(V_ERR_NOMEM, "out of memory"));
				memset(done + done_cap, 0, (size_t)(nc - done_cap) *
				    sizeof *done);
				done_cap = nc;
			}
			done[x->line] = x->out;
			done_len[x->line] = x->out_len;
			x->out = NULL;
			x->live = 0;
		}
		while (next_out < next_line && next_out < done_cap &&
		    done[next_out] != NULL) {
			fwrite(done[next_out], 1, done_len[next_out], stdout);
			putchar('\n');
			free(done[next_out]);
			done[next_out++] = NULL;
		}
		fflush(stdout);
		if (live == 0 && eof)
			break;
		if (live == 0)
			continue;
		/* One step for every live sequence at once. */
		struct infer_slot sl[BATCH_WIDTH];
		int k = 0;
		for (int i = 0; i < BATCH_WIDTH; i++) {
			struct bjob *x = &b[i];
			if (!x->live || x->j.state != JOB_RUN)
				continue;
			struct seq *s = &x->j.s;
			sl[k++] = (struct infer_slot){ &s->st, x->j.next, s->n,
			    s->logits };
			s->tok[s->n++] = x->j.next;
		}
		int err = infer_step(&g->m, &g->w, sl, k);
		if (err)
			cli_fatal(err);
		for (int i = 0; i < BATCH_WIDTH; i++)
			if (b[i].live && b[i].j.state == JOB_RUN)
				job_pick(g, &b[i].j);
	}
	for (int i = 0; i < BATCH_WIDTH; i++) {
		seq_free(&b[i].j.s);
		sampler_free(&b[i].j.smp);
	}
	free(done);
	free(done_len);
	free(line);
}

/* ---- --chat: the Claire turn format, history in the context ---- */

struct chat {
	struct seq s;
	int *turn;		/* where each turn starts in s.tok */
	int n_turns, cap_turns;
	int interactive;
};

static char *
chat_read(struct chat *ch, FILE *in, char **buf, size_t *cap)
{
	if (ch->interactive) {
		free(*buf);
		*buf = readline("> ");
		if (*buf == NULL)
			return NULL;
		*cap = strlen(*buf) + 1;
		if (**buf != '\0')
			add_history(*buf);
		return *buf;
	}
	size_t len;
	return read_line(in, buf, cap, &len) ? *buf : NULL;
}

/* Drop the oldest turns (keeping <bos>) until need more tokens fit, and
 * rebuild the cache from what remains. */
static void
chat_make_room(struct gen *g, struct chat *ch, int need)
{
	if (ch->s.n + need <= ch->s.st.cap)
		return;
	int drop = 0;
	while (drop < ch->n_turns &&
	    1 + (ch->s.n - ch->turn[drop]) + need > ch->s.st.cap)
		drop++;
	if (drop == ch->n_turns && 1 + need > ch->s.st.cap)
		cli_die("a turn of %d tokens does not fit the context of %d",
		    need, ch->s.st.cap);
	int from = drop < ch->n_turns ? ch->turn[drop] : ch->s.n;
	int keep = ch->s.n - from;
	int *ids = malloc((size_t)(keep + 1) * sizeof *ids);
	if (ids == NULL)
		cli_fatal(v_error(V_ERR_NOMEM, "out of memory"));
	ids[0] = TOK_BOS;
	memcpy(ids + 1, ch->s.tok + from, (size_t)keep * sizeof *ids);
	for (int i = drop; i < ch->n_turns; i++)
		ch->turn[i - drop] = ch->turn[i] - from + 1;
	ch->n_turns -= drop;
	ch->s.n = 0;
	int err = seq_feed(g, &ch->s, ids, keep + 1);
	free(ids);
	if (err)
		cli_fatal(err);
}

static void
run_chat(struct gen *g, FILE *in)
{
	struct chat ch;
	char *line = NULL;
	size_t cap = 0;
	struct job j;
	memset(&ch, 0, sizeof ch);
	memset(&j, 0, sizeof j);
	ch.interactive = isatty(fileno(in)) && isatty(STDOUT_FILENO);
	int err = seq_init(g, &ch.s, g->ctx);
	int bos = TOK_BOS;
	if (err == V_OK)
		err = seq_feed(g, &ch.s, &bos, 1);
	if (err)
		cli_fatal(err);
	if (ch.interactive)
		using_history();
	/* Turns: the user is speaker 1, the model answers as speaker 2. */
	for (long turn = 0; chat_read(&ch, in, &line, &cap) != NULL; turn++) {
		struct tok_buf t = { 0 };
		const char *sep = ch.n_turns > 0 ? "\n" : "";
		if (buf_add(&t, sep, strlen(sep)) ||
		    buf_add(&t, "[Intervenant 1:] ", 17) ||
		    buf_add(&t, line, strlen(line)) ||
		    buf_add(&t, "\n[Intervenant 2:]", 17))
			cli_fatal(V_ERR_NOMEM);
		struct tok_ids ids = { 0 };
		if ((err = tok_encode(g->enc, t.p, t.n, &ids, NULL)) != V_OK)
			cli_fatal(err);
		tok_buf_free(&t);
		int reserve = g->max_tokens < g->ctx / 4 ? g->max_tokens :
		    g->ctx / 4;
		chat_make_room(g, &ch, (int)ids.n + reserve);
		if (ch.n_turns == ch.cap_turns) {
			ch.cap_turns = ch.cap_turns ? 2 * ch.cap_turns : 16;
			ch.turn = realloc(ch.turn, (size_t)ch.cap_turns *
			    sizeof *ch.turn);
			if (ch.turn == NULL)
				cli_fatal(V_ERR_NOMEM);
		}
		ch.turn[ch.n_turns++] = ch.s.n;
		int *v = malloc(ids.n * sizeof *v);
		if (v == NULL)
			cli_fatal(V_ERR_NOMEM);
		for (size_t i = 0; i < ids.n; i++)
			v[i] = (int)ids.v[i];
		err = seq_feed(g, &ch.s, v, (int)ids.n);
		free(v);
		tok_ids_free(&ids);
		if (err)
			cli_fatal(err);
		/* The answer runs on the shared cache, so the job borrows
		 * it for the turn. */
		j.s = ch.s;
		job_setup(g, &j, stdout, g->seed + (uint64_t)turn, -1);
		/* "[Intervenant 2:] Bonjour": the space is the format's. */
		j.e.lstrip = 1;
		for (;;) {
			job_pick(g, &j);
			if (j.state != JOB_RUN)
				break;
			if ((err = seq_feed(g, &j.s, &j.next, 1)) != V_OK)
				cli_fatal(err);
		}
		ch.s = j.s;
		emit_finish(&j.e);
		if (j.e.err)
			cli_fatal(j.e.err);
		if (putchar('\n') == EOF || fflush(stdout) != 0)
			cli_fatal(v_error_errno(V_ERR_IO, "standard output"));
		conf_finish(&j.c, job_why[j.state]);
		report_end(g, &j);
		emit_free(&j.e);
	}
	if (ch.interactive)
		putchar('\n');	/* after the ^D that ended the dialogue */
	free(line);
	free(ch.turn);
	sampler_free(&j.smp);
	seq_free(&ch.s);
}

/* ---- setup ---- */

/* The tokenizer beside a checkpoint: tokenizer.bpe in the checkpoint's
 * directory (or the one holding the .safetensors file), or one or two
 * levels up, where a pipeline's run directory keeps it for ckpt/step-N/
 * (pipelines/chain.mk: RUN/tokenizer.bpe, RUN/ckpt/latest). */
static char *
find_tokenizer(const char *model)
{
	struct stat sb;
	size_t n = strlen(model) + 40;
	char *dir = malloc(n), *p = malloc(n);
	if (dir == NULL || p == NULL)
		cli_fatal(V_ERR_NOMEM);
	snprintf(dir, n, "%s", model);
	if (stat(model, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
		char *sl = strrchr(dir, '/');
		if (sl != NULL)
			*sl = '\0';
		else
			snprintf(dir, n, ".");
	}
	const char *try[] = { "%s/tokenizer.bpe", "%s/../tokenizer.bpe",
	    "%s/../../tokenizer.bpe" };
	for (int i = 0; i < 3; i++) {
		snprintf(p, n, try[i], dir);
		if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
			free(dir);
			return p;
		}
	}
	free(dir);
	free(p);
	return NULL;
}

static void
load(struct gen *g, const char *model, const char *tokpath)
{
	int err = infer_model_open(&g->m, model);
	if (err)
		cli_fatal(err);
	char *found = NULL;
	if (tokpath == NULL && (tokpath = found = find_tokenizer(model)) == NULL)
		cli_die("%s: no tokenizer.bpe beside the checkpoint; give one "
		    "with -t", model);
	if ((err = tok_load(tokpath, &g->tok)) != V_OK)
		cli_fatal(err);
	const struct st_file *f = (const struct st_file *)g->m.file;
	const char *want = st_meta(f, "vesper.tokenizer");
	if (want != NULL && want[0] != '\0' &&
	    strcmp(want, tok_sha256_hex(g->tok)) != 0)
		cli_die("%s: the model was trained with another tokenizer "
		    "(sha256 %.12s..., %s is %.12s...)", model, want, tokpath,
		    tok_sha256_hex(g->tok));
	if ((int)tok_vocab_size(g->tok) != g->m.c.vocab_used)
		cli_die("%s has %u tokens, the model %d", tokpath,
		    tok_vocab_size(g->tok), g->m.c.vocab_used);
	free(found);
	if ((err = tok_enc_new(g->tok, &g->enc)) != V_OK)
		cli_fatal(err);
	g->vocab = g->m.c.vocab_used;
	g->ctx = g->m.c.ctx;
	int cap = g->batch ? (BATCH_WIDTH > PREFILL_CHUNK ? BATCH_WIDTH :
	    PREFILL_CHUNK) : PREFILL_CHUNK;
	if ((err = infer_work_init(&g->w, &g->m, cap)) != V_OK)
		cli_fatal(err);
}

/* The argument of an option whose argument may be left out: after '='
 * as getopt gives it, or as the next word, since vgen takes no operands
 * for it to be confused with ("--satisfice 0.9"). */
static const char *
optional_word(int argc, char **argv)
{
	if (optarg != NULL)
		return optarg;
	if (optind < argc && argv[optind][0] != '-')
		return argv[optind++];
	return NULL;
}

static uint64_t
default_seed(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000007ULL ^ (uint64_t)ts.tv_nsec ^
	    ((uint64_t)getpid() << 32);
}

int
main(int argc, char **argv)
{
	cli_init("vgen",
	    "vgen [-h] [--device auto|cpu|cuda] -m model [-t tokenizer] [-p text]\n"
	    "[--batch] [--chat] [-n max-tokens] [--temperature t] [--top-k k]\n"
	    "[--top-p p] [--repeat-penalty r] [--seed n] [--stop string]\n"
	    "[--confidence [file]] [--satisfice [tau]]");
	cli_signals();
	enum { O_DEVICE = 256, O_BATCH, O_CHAT, O_TEMP, O_TOPK, O_TOPP,
	    O_REPEAT, O_SEED, O_STOP, O_CONF, O_SATISFICE };
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "device", required_argument, NULL, O_DEVICE },
		{ "model", required_argument, NULL, 'm' },
		{ "tokenizer", required_argument, NULL, 't' },
		{ "prompt", required_argument, NULL, 'p' },
		{ "max-tokens", required_argument, NULL, 'n' },
		{ "batch", no_argument, NULL, O_BATCH },
		{ "chat", no_argument, NULL, O_CHAT },
		{ "temperature", required_argument, NULL, O_TEMP },
		{ "top-k", required_argument, NULL, O_TOPK },
		{ "top-p", required_argument, NULL, O_TOPP },
		{ "repeat-penalty", required_argument, NULL, O_REPEAT },
		{ "seed", required_argument, NULL, O_SEED },
		{ "stop", required_argument, NULL, O_STOP },
		{ "confidence", optional_argument, NULL, O_CONF },
		{ "satisfice", optional_argument, NULL, O_SATISFICE },
		{ NULL, 0, NULL, 0 }
	};
	static struct gen g;
	enum v_device want = V_DEVICE_AUTO;
	int device_given = 0;
	const char *model = NULL, *tokpath = NULL, *prompt = NULL;
	const char *conf_path = NULL;
	int seed_set = 0, c;

	sample_defaults(&g.sp);
	g.max_tokens = 256;
	while ((c = getopt_long(argc, argv, "+hm:t:p:n:", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			cli_help();
		case O_DEVICE: {
			int err = v_device_parse(optarg, &want);
			if (err)
				cli_bad_usage("--device: %s", v_errmsg(err));
			device_given = 1;
			break;
		}
		case 'm':
			model = optarg;
			break;
		case 't':
			tokpath = optarg;
			break;
		case 'p':
			prompt = optarg;
			break;
		case 'n':
			g.max_tokens = (int)cli_int("-n", optarg, 1, 1 << 24);
			break;
		case O_BATCH:
			g.batch = 1;
			break;
		case O_CHAT:
			g.chat = 1;
			break;
		case O_TEMP:
			g.sp.temperature = (float)cli_real("--temperature", optarg,
			    0, 100);
			break;
		case O_TOPK:
			g.sp.top_k = (int)cli_int("--top-k", optarg, 0, 1 << 22);
			break;
		case O_TOPP:
			g.sp.top_p = (float)cli_real("--top-p", optarg, 1e-6, 1);
			break;
		case O_REPEAT:
			g.sp.repeat_penalty = (float)cli_real("--repeat-penalty",
			    optarg, 0.01, 100);
			break;
		case O_SEED:
			g.seed = cli_count("--seed", optarg, 0, UINT64_MAX);
			seed_set = 1;
			break;
		case O_STOP:
			if (optarg[0] == '\0')
				cli_bad_usage("--stop: an empty string");
			if (g.n_stops == MAX_STOPS)
				cli_bad_usage("--stop: at most %d strings", MAX_STOPS);
			g.stops[g.n_stops++] = optarg;
			break;
		case O_CONF:
			g.conf = 1;
			conf_path = optional_word(argc, argv);
			break;
		case O_SATISFICE: {
			const char *tau = optional_word(argc, argv);
			g.satisfice = tau ? cli_real("--satisfice", tau, 1e-6, 1) :
			    0.85;
			break;
		}
		default:
			cli_usage();
		}
	}
	if (optind < argc)
		cli_bad_usage("unexpected argument '%s'", argv[optind]);

	struct v_backend be;
	int err = v_backend_open(want, &be);
	if (err)
		cli_fatal(err);
	if (be.device == V_DEVICE_CUDA) {
		/* The decode step exists on the CPU only so far. */
		if (want == V_DEVICE_CUDA)
			cli_not_built("CUDA decoding");
		if (device_given)
			cli_warn("%s: no CUDA decode path yet; using the CPU",
			    be.name);
	} else if (be.note[0] != '\0' && device_given) {
		/* Said only when asked: the CPU is where vgen runs anyway. */
		cli_warn("%s", be.note);
	}
	if (model == NULL)
		cli_bad_usage("no model: give one with -m");
	if (g.batch + g.chat + (prompt != NULL) > 1)
		cli_bad_usage("-p, --batch and --chat exclude each other");
	if (g.conf && conf_path == NULL) {
		g.colour = isatty(STDOUT_FILENO) && !g.batch;
		if (!g.colour)
			g.conf_fp = stderr;
	}
	if (!seed_set)
		g.seed = default_seed();

	struct v_atomic conf_out = { 0 };
	if (conf_path != NULL) {
		if ((err = v_atomic_open(&conf_out, conf_path)) != V_OK)
			cli_fatal(err);
		g.conf_fp = conf_out.fp;
	}
	load(&g, model, tokpath);

	if (g.chat) {
		run_chat(&g, stdin);
	} else if (g.batch) {
		run_batch(&g, stdin);
	} else if (prompt != NULL) {
		run_single(&g, prompt, strlen(prompt));
	} else {
		char *text;
		size_t len;
		if ((err = v_slurp("-", 64 << 20, &text, &len)) != V_OK)
			cli_fatal(err);
		/* `echo prompt | vgen`: the newline echo adds is not part of
		 * the prompt, as $(...) drops it in the shell. */
		if (len > 0 && text[len - 1] == '\n')
			len--;
		run_single(&g, text, len);
		free(text);
	}
	if (conf_path != NULL && (err = v_atomic_commit(&conf_out)) != V_OK)
		cli_fatal(err);
	infer_work_free(&g.w);
	tok_enc_free(g.enc);
	tok_free(g.tok);
	infer_model_free(&g.m);
	return cli_exit_status(0);
}
