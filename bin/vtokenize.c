/* vtokenize.c: French-aware normalisation and byte-level BPE. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int
main(int argc, char **argv)
{
	cli_init("vtokenize",
	"vtokenize train [-h] [options] [file ...]\n"
	"vtokenize encode [-h] [options] [file ...]\n"
	"vtokenize decode [-h] [options] [file]\n"
	"vtokenize export [-h] [options]\n"
	"vtokenize normalize [-h] [options] [file ...]");
	cli_signals();
	if (argc < 2)
		cli_usage();
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
		cli_help();
	if (strcmp(argv[1], "train") == 0 ||
	    strcmp(argv[1], "encode") == 0 ||
	    strcmp(argv[1], "decode") == 0 ||
	    strcmp(argv[1], "export") == 0 ||
	    strcmp(argv[1], "normalize") == 0) {
		for (int i = 2; i < argc; i++)
			if (strcmp(argv[i], "-h") == 0)
				cli_help();
		cli_not_built(argv[1]);
	}
	cli_bad_usage("unknown command '%s'", argv[1]);
}
