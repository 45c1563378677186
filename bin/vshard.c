/* vshard.c: cut a token stream into checksummed zstd shards, and check,
 * read back and describe a shard directory. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "../lib/shard.h"
#include "../lib/shard_reader.h"
#include "../lib/shard_write.h"
#include "../lib/tokstream.h"
#include "../lib/verr.h"
#include "../lib/vio.h"
#include "../lib/vprogress.h"
#include "../lib/vhash.h"

/* One subcommand's options: -h, and for cat and stats one more. */
static const char *
sub_args(int argc, char **argv, const char *extra, int *optval)
{
	struct option lo[] = {
		{ "help", no_argument, NULL, 'h' },
		{ extra, required_argument, NULL, 'x' },
		{ NULL, 0, NULL, 0 }
	};
	const char *xv = NULL;
	int c;

	if (extra == NULL)
		memset(&lo[1], 0, sizeof lo[1]);
	optind = 1;
	while ((c = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
		switch (c) {
		case 'h':
			cli_help();
		case 'x':
			if (extra == NULL)
				cli_usage();
			xv = optarg;
			break;
		default:
			cli_usage();
		}
	}
	if (argc - optind != 1)
		cli_bad_usage("expected one shard directory");
	*optval = optind;
	return xv;
}

static int
cmd_verify(const char *dir)
{
	struct shard_manifest m;
	int err = shard_verify_dir(dir, &m);

	if (err)
		cli_fatal(err);
	fprintf(stderr, "%s: %s: ok: %zu train shards (%llu documents, %llu tokens), "
	    "%zu val shards (%llu documents, %llu tokens)\n", cli_prog, dir,
	    m.split[0].n, (unsigned long long)m.split[0].docs,
	    (unsigned long long)m.split[0].tokens, m.split[1].n,
	    (unsigned long long)m.split[1].docs, (unsigned long long)m.split[1].tokens);
	shard_manifest_free(&m);
	return 0;
}

/* Write the documents of split sp to w, joining pieces across shards. */
static int
cat_split(const char *dir, const struct shard_manifest *m, int sp, struct ts_writer *w)
{
	uint32_t *doc = NULL;
	size_t len = 0, cap = 0;
	int err = V_OK, open_doc = 0;

	for (size_t i = 0; i < m->split[sp].n && err == V_OK; i++) {
		struct shard_data d;
		char *path = shard_path(dir, m->split[sp].shards[i].file);
		if (path == NULL)
			cli_die("out of memory");
		err = shard_file_load(path, &d);
		if (err == V_OK)
			err = shard_check_entry(m, sp, i, &d.h, path);
		if (err == V_OK && ((d.h.flags & SHARD_F_CONT_FIRST) != 0) != open_doc)
			err = v_error(V_ERR_MISMATCH, "%s: continuation flags disagree with "
			    "the previous shard", path);
		const uint32_t *ids = d.ids;
		for (uint64_t k = 0; err == V_OK && k < d.h.pieces; k++) {
			size_t n = d.lengths[k];
			if (len + n > cap) {
				size_t nc = cap ? cap : 4096;
				while (nc < len + n)
					nc *= 2;
				uint32_t *nd = realloc(doc, nc * sizeof *doc);
				if (nd == NULL)
					cli_die("out of memory");
				doc = nd;
				cap = nc;
			}
			if (n > 0)
				memcpy(doc + len, ids, n * sizeof *ids);
			len += n;
			ids += n;
			if (k + 1 == d.h.pieces && (d.h.flags & SHARD_F_CONT_LAST))
				break;
			err = ts_write_doc(w, doc, len);
			len = 0;
		}
		open_doc = (d.h.flags & SHARD_F_CONT_LAST) != 0;
		shard_data_free(&d);
		free(path);
	}
	if (err == V_OK && open_doc)
		err = v_error(V_ERR_MISMATCH, "%s: the last %s shard continues into a "
		    "shard that does not exist", dir, shard_split_name(sp));
	free(doc);
	return err;
}

static int
cmd_cat(const char *dir, const char *which)
{
	struct shard_manifest m;
	struct ts_writer w;
	int lo = 0, hi = 2, err;

	if (which != NULL) {
		if (strcmp(which, "train") == 0)
			hi = 1;
		else if (strcmp(which, "val") == 0)
			lo = 1;
		else if (strcmp(which, "all") != 0)
			cli_bad_usage("--split: train, val or all, not '%s'", which);
	}
	if ((err = shard_manifest_load(&m, dir)))
		cli_fatal(err);
	if ((err = ts_writer_open(&w, stdout, "standard output", m.vocab, m.width,
	    m.tokenizer)))
		cli_fatal(err);
	for (int sp = lo; sp < hi && err == V_OK; sp++)
		err = cat_split(dir, &m, sp, &w);
	if (err == V_OK)
		err = ts_writer_close(&w);
	else
		ts_writer_free(&w);
	shard_manifest_free(&m);
	if (err)
		cli_fatal(err);
	return 0;
}

static int
cmd_stats(const char *dir, const char *format)
{
	struct shard_manifest m;
	int err, json = 0;
	char hex[65];

	if (format != NULL) {
		if (strcmp(format, "json") == 0)
			json = 1;
		else if (strcmp(format, "text") != 0)
			cli_bad_usage("--format: text or json, not '%s'", format);
	}
	if ((err = shard_manifest_load(&m, dir)))
		cli_fatal(err);
	v_hex_encode(m.tokenizer, 32, hex);
	if (json)
		printf("{\"vocab_size\":%u,\"tokenizer_sha256\":\"%s\",\"shard_tokens\":%llu",
		    m.vocab, hex, (unsigned long long)m.shard_tokens);
	else
		printf("directory      %s\nvocabulary     %u (%d-byte ids)\ntokenizer      %s\n"
		    "shard tokens   %llu\nval fraction   %g (seed %llu, %s)\n", dir, m.vocab,
		    m.width, hex, (unsigned long long)m.shard_tokens, m.val_fraction,
		    (unsigned long long)m.seed, m.shuffle ? "shuffled" : "stream order");
	for (int sp = 0; sp < 2; sp++) {
		const struct shard_split_info *si = &m.split[sp];
		uint64_t bytes = 0, minlen = UINT64_MAX, maxlen = 0, cur = 0;
		int open_doc = 0;
		for (size_t i = 0; i < si->n; i++) {
			struct shard_data d;
			char *path = shard_path(dir, si->shards[i].file);
			if (path == NULL)
				cli_die("out of memory");
			if ((err = shard_file_load(path, &d)) ||
			    (err = shard_check_entry(&m, sp, i, &d.h, path)))
				cli_fatal(err);
			free(path);
			bytes += si->shards[i].bytes;
			for (uint64_t k = 0; k < d.h.pieces; k++) {
				cur += d.lengths[k];
				if (k + 1 == d.h.pieces && (d.h.flags & SHARD_F_CONT_LAST))
					break;
				if (cur < minlen)
					minlen = cur;
				if (cur > maxlen)
					maxlen = cur;
				cur = 0;
			}
			open_doc = (d.h.flags & SHARD_F_CONT_LAST) != 0;
			shard_data_free(&d);
		}
		(void)open_doc;
		if (si->docs == 0)
			minlen = 0;
		double raw = (double)si->tokens * m.width;
		double mean = si->docs ? (double)si->tokens / (double)si->docs : 0;
		if (json)
			printf(",\"%s\":{\"shards\":%zu,\"docs\":%llu,\"tokens\":%llu,"
			    "\"bytes\":%llu,\"doc_tokens_min\":%llu,\"doc_tokens_mean\":%.2f,"
			    "\"doc_tokens_max\":%llu}", shard_split_name(sp), si->n,
			    (unsigned long long)si->docs, (unsigned long long)si->tokens,
			    (unsigned long long)bytes, (unsigned long long)minlen, mean,
			    (unsigned long long)maxlen);
		else
			printf("%-5s          %zu shards, %llu documents, %llu tokens, %llu "
			    "bytes (%.2f bytes/token, %.2fx smaller than raw ids); document "
			    "length min %llu, mean %.1f, max %llu tokens\n",
			    shard_split_name(sp), si->n, (unsigned long long)si->docs,
			    (unsigned long long)si->tokens, (unsigned long long)bytes,
			    si->tokens ? (double)bytes / (double)si->tokens : 0.0,
			    bytes ? raw / (double)bytes : 0.0, (unsigned long long)minlen,
			    mean, (unsigned long long)maxlen);
	}
	if (json)
		printf("}\n");
	shard_manifest_free(&m);
	return 0;
}

static int
cmd_write(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "output", required_argument, NULL, 'o' },
		{ "shard-tokens", required_argument, NULL, 's' },
		{ "val-fraction", required_argument, NULL, 'v' },
		{ "seed", required_argument, NULL, 'S' },
		{ "no-shuffle", no_argument, NULL, 'n' },
		{ "level", required_argument, NULL, 'l' },
		{ "progress", no_argument, NULL, 'P' },
		{ "threads", required_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 }
	};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	struct shard_write_opts o = { 1u << 24, 0.01, 1, 1, 3,
	    ncpu < 1 ? 1 : ncpu > 8 ? 8 : (int)ncpu };
	const char *dir = NULL, *in = "-";
	int c, pmode = V_PROGRESS_AUTO;

	while ((c = getopt_long(argc, argv, "+ho:", lo, NULL)) != -1) {
		switch (c) {
		case 'h':
			cli_help();
		case 'o':
			dir = optarg;
			break;
		case 's':
			o.shard_tokens = cli_count("--shard-tokens", optarg, 1, 1u << 30);
			break;
		case 'v':
			o.val_fraction = cli_real("--val-fraction", optarg, 0, 0.5);
			break;
		case 'S':
			o.seed = (uint64_t)cli_int("--seed", optarg, 0, INT64_MAX);
			break;
		case 'n':
			o.shuffle = 0;
			break;
		case 'l':
			o.level = (int)cli_int("--level", optarg, 1, 19);
			break;
		case 'P':
			pmode = V_PROGRESS_ON;
			break;
		case 'T':
			o.threads = (int)cli_int("--threads", optarg, 0, 64);
			break;
		default:
			cli_usage();
		}
	}
	if (dir == NULL)
		cli_bad_usage("-o dir is required");
	if (argc - optind > 1)
		cli_bad_usage("at most one input file");
	if (argc - optind == 1)
		in = argv[optind];

	FILE *fp;
	struct ts_reader r;
	struct shard_write_result res;
	struct v_progress prog;
	int err = v_open_in(in, &fp);
	const char *name = strcmp(in, "-") == 0 ? "standard input" : in;

	if (err)
		cli_fatal(err);
	/* glibc ignores the size unless it is given the buffer. */
	static char inbuf[1 << 20];
	setvbuf(fp, inbuf, _IOFBF, sizeof inbuf);
	if ((err = ts_reader_open(&r, fp, name)))
		cli_fatal(err);
	v_progress_init(&prog, stderr, pmode, "shard", "tokens", V_UNIT_ITEMS, 0);
	err = shard_write_dir(dir, &r, &o, &prog, &res);
	v_progress_finish(&prog);
	ts_reader_free(&r);
	v_close_in(fp);
	if (err)
		cli_fatal(err);
	fprintf(stderr, "%s: %s: train %zu shards, %llu documents, %llu tokens; val %zu "
	    "shards, %llu documents, %llu tokens; %llu bytes\n", cli_prog, dir,
	    res.shards[0], (unsigned long long)res.docs[0],
	    (unsigned long long)res.tokens[0], res.shards[1],
	    (unsigned long long)res.docs[1], (unsigned long long)res.tokens[1],
	    (unsigned long long)res.bytes);
	return 0;
}

int
main(int argc, char **argv)
{
	cli_init("vshard",
	"vshard [-h] [--shard-tokens n] [--val-fraction f] [--seed n]\n"
	"[--no-shuffle] [--level n] [--threads n] [--progress] -o dir\n"
	"[file]\n"
	"vshard verify [-h] dir\n"
	"vshard cat [-h] [--split train | val | all] dir\n"
	"vshard stats [-h] [--format text | json] dir");
	cli_signals();
	/* Past a file size limit (ulimit -f) write() then fails with EFBIG and
	 * the half-written shard is removed, instead of the process dying of
	 * SIGXFSZ with its temporary file left behind. */
	signal(SIGXFSZ, SIG_IGN);
	if (argc < 2)
		cli_usage();
	const char *cmd = argv[1];
	int oi;
	if (strcmp(cmd, "verify") == 0) {
		sub_args(argc - 1, argv + 1, NULL, &oi);
		return cli_exit_status(cmd_verify(argv[1 + oi]));
	}
	if (strcmp(cmd, "cat") == 0) {
		const char *s = sub_args(argc - 1, argv + 1, "split", &oi);
		return cli_exit_status(cmd_cat(argv[1 + oi], s));
	}
	if (strcmp(cmd, "stats") == 0) {
		const char *f = sub_args(argc - 1, argv + 1, "format", &oi);
		return cli_exit_status(cmd_stats(argv[1 + oi], f));
	}
	return cli_exit_status(cmd_write(argc, argv));
}
