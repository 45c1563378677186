/* vfetch.c: download and unpack corpora as JSON Lines documents. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "../lib/fetch.h"
#include "../lib/fetch_docs.h"
#include "../lib/verr.h"
#include "../lib/vprogress.h"

int
main(int argc, char **argv)
{
	cli_init("vfetch",
	"vfetch [-h] [--offline] [--progress] [--cache dir] [--endpoint url]\n"
	"[--revision rev] [--subset names] [--split train | test | all]\n"
	"[--format fmt] [--source name] [--sha256 hex] [--retries n]\n"
	"[--retry-wait s] source ...\n"
	"vfetch --list [--offline] [--cache dir] [--endpoint url] [--revision rev]\n"
	"claire");
	cli_signals();
	static const struct option lo[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "offline", no_argument, NULL, 'O' },
		{ "progress", no_argument, NULL, 'P' },
		{ "cache", required_argument, NULL, 'c' },
		{ "endpoint", required_argument, NULL, 'e' },
		{ "revision", required_argument, NULL, 'r' },
		{ "subset", required_argument, NULL, 's' },
		{ "split", required_argument, NULL, 'S' },
		{ "format", required_argument, NULL, 'f' },
		{ "source", required_argument, NULL, 'n' },
		{ "sha256", required_argument, NULL, 'H' },
		{ "retries", required_argument, NULL, 'R' },
		{ "retry-wait", required_argument, NULL, 'W' },
		{ "list", no_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 }
	};
	struct fetch_opts o;
	int c, list = 0;
	char *cache = NULL;

	memset(&o, 0, sizeof o);
	http_opts_default(&o.http);
	o.format = -1;
	o.split = "train";
	/* The Hugging Face tools' own switch for "no network" is honoured. */
	const char *hoff = getenv("HF_HUB_OFFLINE");
	o.offline = hoff != NULL && (strcmp(hoff, "1") == 0 || strcmp(hoff, "true") == 0);
	o.endpoint = getenv("HF_ENDPOINT");
	if (o.endpoint == NULL || *o.endpoint == '\0')
		o.endpoint = FETCH_ENDPOINT;
	while ((c = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
		switch (c) {
		case 'h':
			cli_help();
		case 'O':
			o.offline = 1;
			break;
		case 'P':
			o.http.progress = V_PROGRESS_ON;
			break;
		case 'c':
			o.cache = optarg;
			break;
		case 'e':
			o.endpoint = optarg;
			break;
		case 'r':
			if (!fetch_revision_ok(optarg))
				cli_bad_usage("--revision: bad revision name '%s'", optarg);
			o.revision = optarg;
			break;
		case 's':
			o.subsets = optarg;
			break;
		case 'S':
			if (strcmp(optarg, "train") != 0 && strcmp(optarg, "test") != 0 &&
			    strcmp(optarg, "all") != 0)
				cli_bad_usage("--split: train, test or all, not '%s'", optarg);
			o.split = optarg;
			break;
		case 'f':
			if ((o.format = docs_format_parse(optarg)) < 0)
				cli_bad_usage("--format: para, eot, line, whole or jsonl, not '%s'",
				    optarg);
			break;
		case 'n':
			o.source = optarg;
			break;
		case 'H':
			if (strlen(optarg) != 64 || strspn(optarg, "0123456789abcdefABCDEF") != 64)
				cli_bad_usage("--sha256: not 64 hexadecimal digits");
			o.sha256 = optarg;
			break;
		case 'R':
			o.http.retries = (int)cli_int("--retries", optarg, 0, 100);
			break;
		case 'W':
			o.http.backoff = cli_real("--retry-wait", optarg, 0, 3600);
			break;
		case 'L':
			list = 1;
			break;
		default:
			cli_usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0)
		cli_bad_usage("no source");
	for (int i = 0; i < argc; i++) {
		const char *sep = strstr(argv[i], "://");
		if (sep != NULL && strncmp(argv[i], "http://", 7) != 0 &&
		    strncmp(argv[i], "https://", 8) != 0)
			cli_bad_usage("%s: only http and https URLs are supported", argv[i]);
	}
	for (int i = 0; i < argc && o.subsets != NULL; i++)
		if (strcmp(argv[i], "claire") != 0)
			cli_bad_usage("--subset applies to claire only, not '%s'", argv[i]);
	if (list && (argc != 1 || strcmp(argv[0], "claire") != 0))
		cli_bad_usage("--list works on claire only");
	/* The endpoint without a trailing slash, so that paths join cleanly. */
	char *ep = strdup(o.endpoint);
	if (ep == NULL)
		cli_die("out of memory");
	for (size_t n = strlen(ep); n > 0 && ep[n - 1] == '/'; n--)
		ep[n - 1] = '\0';
	o.endpoint = ep;
	o.http.token = getenv("HF_TOKEN");
	if (o.http.token != NULL && *o.http.token == '\0')
		o.http.token = NULL;
	o.http.token_origin = ep;
	if (o.cache == NULL) {
		cache = fetch_default_cache();
		if (cache == NULL)
			cli_die("no cache directory: set XDG_CACHE_HOME or HOME, or use --cache");
		o.cache = cache;
	}

	int err;
	if (list) {
		err = fetch_list(&o, stdout);
		if (err)
			cli_fatal(err);
		free(ep);
		free(cache);
		return cli_exit_status(0);
	}
	static char obuf[1 << 20];
	setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
	struct fetch_stats st;
	memset(&st, 0, sizeof st);
	for (int i = 0; i < argc; i++) {
		st.commit[0] = '\0';
		err = fetch_run(&o, argv[i], stdout, &st);
		if (err)
			cli_fatal(err);
		if (st.commit[0] != '\0' && (o.revision == NULL ||
		    strcmp(o.revision, st.commit) != 0))
			fprintf(stderr, "%s: %s: revision %s is commit %s (--revision %s "
			    "pins it)\n", cli_prog, argv[i], o.revision ? o.revision :
			    FETCH_DEFAULT_REVISION, st.commit, st.commit);
	}
	if (st.skipped > 0)
		fprintf(stderr, "%s: %llu documents from %llu files (%llu files skipped: "
		    "not text)\n", cli_prog, (unsigned long long)st.docs,
		    (unsigned long long)st.files, (unsigned long long)st.skipped);
	free(ep);
	free(cache);
	return cli_exit_status(0);
}
