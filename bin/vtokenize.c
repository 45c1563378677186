/* vtokenize.c: French-aware normalisation and byte-level BPE.
 *
 * train, encode, decode, export and normalize share one document reader:
 * JSON Lines ({"id", "source", "text"}) or plain text whose documents are
 * separated by blank lines, told apart by the first character that is not
 * white space unless -f says. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../lib/tok.h"
#include "../lib/tokstream.h"
#include "../lib/verr.h"
#include "../lib/vio.h"
#include "../lib/vjson.h"
#include "../lib/vprogress.h"
#include "cli/cli.h"

enum { FMT_AUTO, FMT_JSONL, FMT_TEXT };
enum { OPT_SKIP_BAD = 256 };

struct opts {
	int format;		/* input: FMT_* */
	int jsonl_out;		/* decode, normalize: -J */
	int threads;
	int progress;
	int skip_bad;
	unsigned steps;		/* normalisation steps (train, normalize) */
	int steps_given;
	uint64_t vocab, min_count;
	const char *tokenizer, *output;
};

/* Documents from the input files, one at a time. */
struct reader {
	char **files;
	int nfiles, next;
	FILE *fp;
	const char *name;
	int format, fmt_opt, skip_bad;
	long line;
	char *lbuf;
	size_t lcap;
	ssize_t pending;	/* a line read ahead, or -1 */
	uint64_t bad, docs, bytes;
};

static int
open_next(struct reader *r)
{
	int err;

	if (r->fp) {
		v_close_in(r->fp);
		r->fp = NULL;
	}
	if (r->next >= r->nfiles)
		return 0;
	r->name = r->files[r->next++];
	if ((err = v_open_in(r->name, &r->fp)))
		return err;
	if (strcmp(r->name, "-") == 0)
		r->name = "standard input";
	r->line = 0;
	r->format = r->fmt_opt;
	r->pending = -1;
	return 1;
}

static ssize_t
read_line(struct reader *r)
{
	if (r->pending >= 0) {
		ssize_t n = r->pending;
		r->pending = -1;
		return n;
	}
	ssize_t n = getline(&r->lbuf, &r->lcap, r->fp);
	if (n >= 0) {
		r->line++;
		r->bytes += (uint64_t)n;
	}
	return n;
}

static int
blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return 0;
	return 1;
}

/* The next document's text into doc: 1, 0 at the end of all input, or an
 * error.  A bad JSON line is an error naming the file and line, or with
 * --skip-bad a warning and the next line. */
static int
next_doc(struct reader *r, struct tok_buf *doc)
{
	int err;
	ssize_t n;

	doc->n = 0;
	for (;;) {
		if (r->fp == NULL) {
			if ((err = open_next(r)) <= 0)
				return err;
		}
		if (r->format == FMT_AUTO) {
			/* The first line that is not blank decides. */
			while ((n = read_line(r)) >= 0 && blank(r->lbuf, (size_t)n))
				;
			if (n < 0) {
				if (ferror(r->fp))
					return v_error_errno(V_ERR_IO, "%s: read error", r->name);
				r->fp = (v_close_in(r->fp), NULL);
				continue;
			}
			size_t i = 0;
			while (r->lbuf[i] == ' ' || r->lbuf[i] == '\t')
				i++;
			r->format = r->lbuf[i] == '{' ? FMT_JSONL : FMT_TEXT;
			r->pending = n;
		}
		if (r->format == FMT_JSONL) {
			while ((n = read_line(r)) >= 0) {
				if (blank(r->lbuf, (size_t)n))
					continue;
				json_t *j;
				const char *s;
				size_t len;
				err = v_json_parse(r->lbuf, (size_t)n, r->name, r->line, &j);
				if (err == V_OK) {
					err = v_json_str(j, "text", &s, &len);
					if (err == V_OK)
						err = tok_buf_put(doc, s, len);
					else {
						char why[256];
						snprintf(why, sizeof why, "%s", v_errmsg(err));
						err = v_error(V_ERR_FORMAT, "%s:%ld: %s", r->name,
						    r->line, why);
					}
					json_decref(j);
				}
				if (err == V_OK) {
					r->docs++;
					return 1;
				}
				if (!r->skip_bad || err == V_ERR_NOMEM)
					return err;
				cli_warn("%s (skipped)", v_errmsg(err));
				r->bad++;
			}
		} else {
			int have = 0;
			while ((n = read_line(r)) >= 0) {
				if (blank(r->lbuf, (size_t)n)) {
					if (have)
						break;
					continue;
				}
				/* Lines join with their own line ends, less the last. */
				if ((err = tok_buf_put(doc, r->lbuf, (size_t)n)))
					return err;
				have = 1;
			}
			if (have) {
				if (doc->n && doc->p[doc->n - 1] == '\n')
					doc->n--;
				if (doc->n && doc->p[doc->n - 1] == '\r')
					doc->n--;
				r->docs++;
				return 1;
			}
		}
		if (ferror(r->fp))
			return v_error_errno(V_ERR_IO, "%s: read error", r->name);
		v_close_in(r->fp);
		r->fp = NULL;
	}
}

static void
reader_init(struct reader *r, char **files, int nfiles, const struct opts *o)
{
	static char *dash[] = { "-" };

	memset(r, 0, sizeof *r);
	r->files = nfiles ? files : dash;
	r->nfiles = nfiles ? nfiles : 1;
	r->fmt_opt = o->format;
	r->skip_bad = o->skip_bad;
	r->pending = -1;
}

static void
reader_free(struct reader *r)
{
	if (r->fp)
		v_close_in(r->fp);
	free(r->lbuf);
}

static void
report(const struct reader *r, const struct tok_stats *st)
{
	if (st && st->invalid)
		cli_warn("%llu ill-formed UTF-8 sequence%s replaced by U+FFFD",
		    (unsigned long long)st->invalid, st->invalid == 1 ? "" : "s");
	if (r->bad)
		cli_warn("%llu bad line%s skipped", (unsigned long long)r->bad,
		    r->bad == 1 ? "" : "s");
}

static int
load(const char *path, struct tok **t)
{
	if (path == NULL)
		cli_bad_usage("-t tokenizer is required");
	int err = tok_load(path, t);
	if (err)
		cli_fatal(err);
	return V_OK;
}

/* Write one document of text, as text (then a blank line) or as a JSON
 * line. */
static int
put_doc(FILE *fp, const char *name, const char *s, size_t n, int jsonl)
{
	int err;

	if (!jsonl) {
		if ((err = v_write_all(fp, s, n, name)))
			return err;
		return v_write_all(fp, "\n\n", 2, name);
	}
	json_t *str = json_stringn(s, n);
	if (str == NULL)
		return v_error(V_ERR_FORMAT, "%s: a document is not valid UTF-8 and "
		    "cannot be written as JSON (use text output)", name);
	json_t *o = json_pack("{s:o}", "text", str);
	char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (line == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	err = v_write_all(fp, line, strlen(line), name);
	if (!err)
		err = v_write_all(fp, "\n", 1, name);
	free(line);
	return err;
}

static int
cmd_normalize(const struct opts *o, char **files, int nfiles)
{
	struct reader r;
	struct tok_buf doc = { 0 }, out = { 0 };
	struct tok_stats st = { 0 };
	unsigned steps = o->steps;
	int err;

	if (o->tokenizer) {
		struct tok *t;
		load(o->tokenizer, &t);
		steps = tok_norm_steps(t);
		tok_free(t);
	}
	reader_init(&r, files, nfiles, o);
	while ((err = next_doc(&r, &doc)) == 1) {
		out.n = 0;
		if ((err = tok_normalize(steps, doc.p ? doc.p : "", doc.n, &out, &st)) ||
		    (err = put_doc(stdout, "standard output", out.p ? out.p : "",
		    out.n, o->jsonl_out)))
			break;
	}
	report(&r, &st);
	reader_free(&r);
	tok_buf_free(&doc);
	tok_buf_free(&out);
	return err;
}

static int
cmd_train(const struct opts *o, char **files, int nfiles)
{
	struct reader r;
	struct tok_buf doc = { 0 };
	struct tok_trainer *tr;
	struct v_progress pg;
	int err;

	if (o->output == NULL)
		cli_bad_usage("-o tokenizer is required");
	if ((err = tok_trainer_new(o->steps, &tr)))
		return err;
	tok_trainer_threads(tr, o->threads);
	reader_init(&r, files, nfiles, o);
	v_progress_init(&pg, stderr, o->progress, "read", "", V_UNIT_BYTES, 0);
	while ((err = next_doc(&r, &doc)) == 1) {
		if ((err = tok_trainer_add(tr, doc.p ? doc.p : "", doc.n)))
			break;
		v_progress_update(&pg, r.bytes);
	}
	v_progress_finish(&pg);
	if (err == V_OK && r.docs == 0)
		err = v_error(V_ERR_FORMAT, "no documents to learn from");
	if (err == V_OK) {
		double t0 = v_now();
		err = tok_trainer_finish(tr, (uint32_t)o->vocab, o->min_count, o->output);
		if (err == V_OK && o->progress == V_PROGRESS_ON) {
			uint64_t d, n;
			tok_trainer_counts(tr, &d, &n);
			cli_warn("%llu documents, %llu words (%llu distinct), merges "
			    "learnt in %.1f s", (unsigned long long)r.docs,
			    (unsigned long long)n, (unsigned long long)d, v_now() - t0);
		}
	}
	struct tok_stats st = { .invalid = tok_trainer_invalid(tr) };
	report(&r, &st);
	reader_free(&r);
	tok_buf_free(&doc);
	tok_trainer_free(tr);
	return err;
}

#define BATCH_DOCS 4096
#define BATCH_BYTES ((size_t)8 << 20)

/* Documents read together, encoded in parallel, written in order. */
struct batch {
	struct tok_buf docs[BATCH_DOCS];
	struct tok_ids ids[BATCH_DOCS];
	int errs[BATCH_DOCS];
	size_t n;
	char msg[256];		/* the detail of the first failure */
};

/* Error details are per thread: carry one from the thread that failed. */
static void
keep_msg(char *msg, size_t len, int err)
{
	#pragma omp critical(vtokenize_msg)
	if (msg[0] == '\0')
		snprintf(msg, len, "%s", v_errmsg(err));
}

/* Read up to a batch of documents: V_OK (b->n may be 0 at the end) or an
 * error. */
static int
batch_read(struct reader *r, struct batch *b)
{
	size_t bytes = 0;
	int err = 1;

	b->n = 0;
	b->msg[0] = '\0';
	while (b->n < BATCH_DOCS && bytes < BATCH_BYTES &&
	    (err = next_doc(r, &b->docs[b->n])) == 1)
		bytes += b->docs[b->n++].n;
	return err < 0 ? err : V_OK;
}

/* Start one task per document; the encoders are per thread. */
static void
batch_spawn(struct batch *b, struct tok_enc **enc, struct tok_stats *st)
{
	for (size_t d = 0; d < b->n; d++) {
		#pragma omp task firstprivate(d) shared(b, enc, st)
		{
			int me = 0;
#ifdef _OPENMP
			me = omp_get_thread_num();
#endif
			struct tok_ids *ids = &b->ids[d];
			ids->n = 0;
			b->errs[d] = tok_ids_push(ids, TOK_BOS);
			if (!b->errs[d])
				b->errs[d] = tok_encode(enc[me], b->docs[d].p ? b->docs[d].p : "",
				    b->docs[d].n, ids, &st[me]);
			if (!b->errs[d])
				b->errs[d] = tok_ids_push(ids, TOK_EOS);
			if (b->errs[d])
				keep_msg(b->msg, sizeof b->msg, b->errs[d]);
		}
	}
}

static int
batch_write(struct batch *b, struct ts_writer *w)
{
	int err = V_OK;

	for (size_t d = 0; d < b->n && !err; d++)
		err = b->errs[d] ? v_error(b->errs[d], "%s", b->msg) :
		    ts_write_doc(w, b->ids[d].v, b->ids[d].n);
	for (size_t d = 0; d < b->n; d++) {
		/* A huge document should not keep its memory. */
		if (b->docs[d].cap > ((size_t)16 << 20))
			tok_buf_free(&b->docs[d]);
		if (b->ids[d].cap > ((size_t)4 << 20))
			tok_ids_free(&b->ids[d]);
	}
	return err;
}

static void
batch_free(struct batch *b)
{
	for (size_t d = 0; d < BATCH_DOCS; d++) {
		tok_buf_free(&b->docs[d]);
		tok_ids_free(&b->ids[d]);
	}
	free(b);
}

static int
cmd_encode(const struct opts *o, char **files, int nfiles)
{
	struct tok *t;
	struct reader r;
	struct v_atomic out;
	struct ts_writer w;
	struct v_progress pg;
	int nt = o->threads, err = V_OK;
	char msg[256] = "";

	load(o->tokenizer, &t);
	struct tok_enc **enc = calloc((size_t)nt, sizeof *enc);
	struct tok_stats *st = calloc((size_t)nt, sizeof *st);
	struct batch *cur = calloc(1, sizeof *cur), *next = calloc(1, sizeof *next);
	if (!enc || !st || !cur || !next)
		cli_fatal(v_error(V_ERR_NOMEM, "out of memory"));
	for (int i = 0; i < nt; i++)
		if ((err = tok_enc_new(t, &enc[i])))
			cli_fatal(err);
	if ((err = v_atomic_open(&out, o->output ? o->output : "-")))
		cli_fatal(err);
	const char *oname = o->output ? o->output : "standard output";
	if ((err = ts_writer_open(&w, out.fp, oname, tok_vocab_size(t), 0,
	    tok_sha256(t)))) {
		v_atomic_abort(&out);
		cli_fatal(err);
	}
	reader_init(&r, files, nfiles, o);
	v_progress_init(&pg, stderr, o->progress, "encode", "", V_UNIT_BYTES, 0);

	/* One thread reads the next batch and writes the last while the
	 * others (and it, when it waits) encode the current one. */
	#pragma omp parallel num_threads(nt)
	#pragma omp single
	{
		err = batch_read(&r, cur);
		if (!err)
			batch_spawn(cur, enc, st);
		while (!err && cur->n > 0) {
			int rerr = batch_read(&r, next);
			#pragma omp taskwait
			if (!rerr && next->n > 0)
				batch_spawn(next, enc, st);
			err = batch_write(cur, &w);
			if (!err)
				err = rerr;
			v_progress_update(&pg, r.bytes);
			struct batch *x = cur;
			cur = next;
			next = x;
		}
		if (err)
			keep_msg(msg, sizeof msg, err);
		#pragma omp taskwait
	}
	if (err)
		v_error(err, "%s", msg);
	v_progress_finish(&pg);
	struct tok_stats sum = { 0 };
	for (int i = 0; i < nt; i++) {
		sum.invalid += st[i].invalid;
		tok_enc_free(enc[i]);
	}
	if (err == V_OK)
		err = ts_writer_close(&w);
	else
		ts_writer_free(&w);
	if (err == V_OK)
		err = v_atomic_commit(&out);
	else
		v_atomic_abort(&out);
	report(&r, &sum);
	reader_free(&r);
	batch_free(cur);
	batch_free(next);
	free(enc);
	free(st);
	tok_free(t);
	return err;
}

static int
cmd_decode(const struct opts *o, char **files, int nfiles)
{
	struct tok *t;
	struct ts_reader rd;
	struct v_atomic out;
	struct tok_buf text = { 0 };
	FILE *fp;
	const char *name = nfiles ? files[0] : "-";
	int err;

	if (nfiles > 1)
		cli_bad_usage("decode reads one token stream");
	load(o->tokenizer, &t);
	if ((err = v_open_in(name, &fp)))
		cli_fatal(err);
	if (strcmp(name, "-") == 0)
		name = "standard input";
	if ((err = ts_reader_open(&rd, fp, name)))
		cli_fatal(err);
	static const unsigned char zero[32];
	if (memcmp(rd.tokenizer, zero, 32) != 0 &&
	    memcmp(rd.tokenizer, tok_sha256(t), 32) != 0)
		cli_fatal(v_error(V_ERR_MISMATCH, "%s was made by another tokenizer "
		    "than %s (SHA-256 %s)", name, o->tokenizer, tok_sha256_hex(t)));
	if (rd.vocab != tok_vocab_size(t))
		cli_fatal(v_error(V_ERR_MISMATCH, "%s has a vocabulary of %u, %s of %u",
		    name, rd.vocab, o->tokenizer, tok_vocab_size(t)));
	if ((err = v_atomic_open(&out, o->output ? o->output : "-")))
		cli_fatal(err);
	const char *oname = o->output ? o->output : "standard output";
	const uint32_t *ids;
	size_t n;
	while ((err = ts_read_doc(&rd, &ids, &n)) == 1) {
		/* The <bos> and <eos> that frame a document are not its text. */
		if (n && ids[0] == TOK_BOS) {
			ids++;
			n--;
		}
		if (n && ids[n - 1] == TOK_EOS)
			n--;
		text.n = 0;
		if ((err = tok_decode(t, ids, n, &text)) ||
		    (err = put_doc(out.fp, oname, text.p ? text.p : "", text.n,
		    o->jsonl_out)))
			break;
	}
	if (err == V_OK)
		err = v_atomic_commit(&out);
	else
		v_atomic_abort(&out);
	ts_reader_free(&rd);
	v_close_in(fp);
	tok_buf_free(&text);
	tok_free(t);
	return err;
}

static int
cmd_export(const struct opts *o)
{
	struct tok *t;
	int err;

	load(o->tokenizer, &t);
	err = tok_export_hf(t, o->output ? o->output : "-");
	tok_free(t);
	return err;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "skip-bad", no_argument, NULL, OPT_SKIP_BAD },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct opts o = { 0 };
	const char *cmd;
	const char *allowed;
	int c, err;

	cli_init("vtokenize",
	    "vtokenize train [-hP] [-f format] [-j threads] [-m count] [-N steps]\n"
	    "[-v vocab] [--skip-bad] -o tokenizer [file ...]\n"
	    "vtokenize encode [-hP] [-f format] [-j threads] [--skip-bad] -t tokenizer\n"
	    "[-o file] [file ...]\n"
	    "vtokenize decode [-hJ] -t tokenizer [-o file] [file]\n"
	    "vtokenize export [-h] -t tokenizer [-o file]\n"
	    "vtokenize normalize [-hJ] [-f format] [-N steps] [-t tokenizer]\n"
	    "[--skip-bad] [file ...]");
	cli_signals();
	if (argc < 2)
		cli_usage();
	cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0)
		cli_help();
	if (strcmp(cmd, "train") == 0)
		allowed = "hPf:j:m:N:v:o:";
	else if (strcmp(cmd, "encode") == 0)
		allowed = "hPf:j:t:o:";
	else if (strcmp(cmd, "decode") == 0)
		allowed = "hJt:o:";
	else if (strcmp(cmd, "export") == 0)
		allowed = "ht:o:";
	else if (strcmp(cmd, "normalize") == 0)
		allowed = "hJf:N:t:";
	else
		cli_bad_usage("unknown command '%s'", cmd);

	o.threads = 1;
#ifdef _OPENMP
	o.threads = omp_get_num_procs();
#endif
	o.progress = V_PROGRESS_AUTO;
	o.steps = TOK_NORM_ALL;
	o.vocab = TOK_DEFAULT_VOCAB;
	o.min_count = 2;
	optind = 2;
	while ((c = getopt_long(argc, argv, allowed, longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			cli_help();
		case 'P':
			o.progress = V_PROGRESS_ON;
			break;
		case 'J':
			o.jsonl_out = 1;
			break;
		case 'f':
			if (strcmp(optarg, "auto") == 0)
				o.format = FMT_AUTO;
			else if (strcmp(optarg, "jsonl") == 0)
				o.format = FMT_JSONL;
			else if (strcmp(optarg, "text") == 0)
				o.format = FMT_TEXT;
			else
				cli_bad_usage("-f: format must be auto, jsonl or text");
			break;
		case 'j':
			o.threads = (int)cli_int("-j", optarg, 1, 1024);
			break;
		case 'm':
			o.min_count = cli_count("-m", optarg, 1, UINT64_MAX);
			break;
		case 'N': {
			unsigned off;
			if ((err = tok_norm_parse(optarg, &off)))
				cli_bad_usage("-N: %s", v_errmsg(err));
			o.steps &= ~off;
			o.steps_given = 1;
			break;
		}
		case 'v':
			o.vocab = cli_count("-v", optarg, TOK_FIRST_MERGE, 1u << 24);
			break;
		case 't':
			o.tokenizer = optarg;
			break;
		case 'o':
			o.output = optarg;
			break;
		case OPT_SKIP_BAD:
			if (strcmp(cmd, "decode") == 0 || strcmp(cmd, "export") == 0)
				cli_usage();
			o.skip_bad = 1;
			break;
		default:
			cli_usage();
		}
	}
	char **files = argv + optind;
	int nfiles = argc - optind;

	if (strcmp(cmd, "normalize") == 0) {
		if (o.tokenizer && o.steps_given)
			cli_bad_usage("-N and -t both say which steps to take");
		err = cmd_normalize(&o, files, nfiles);
	} else if (strcmp(cmd, "train") == 0) {
		err = cmd_train(&o, files, nfiles);
	} else if (strcmp(cmd, "encode") == 0) {
		err = cmd_encode(&o, files, nfiles);
	} else if (strcmp(cmd, "decode") == 0) {
		err = cmd_decode(&o, files, nfiles);
	} else {
		if (nfiles)
			cli_bad_usage("export takes no file");
		err = cmd_export(&o);
	}
	if (err)
		cli_fatal(err);
	return cli_exit_status(0);
}
