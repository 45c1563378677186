/* vckpt.c: inspect, verify, convert and export checkpoints. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int
main(int argc, char **argv)
{
	cli_init("vckpt",
	"vckpt info [-h] file\n"
	"vckpt verify [-h] file\n"
	"vckpt diff [-h] file file\n"
	"vckpt convert [-h] [options] file output\n"
	"vckpt average [-h] -o output file ...\n"
	"vckpt export [-h] [options] file\n"
	"vckpt import [-h] [options] -o output");
	cli_signals();
	if (argc < 2)
		cli_usage();
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
		cli_help();
	if (strcmp(argv[1], "info") == 0 ||
	    strcmp(argv[1], "verify") == 0 ||
	    strcmp(argv[1], "diff") == 0 ||
	    strcmp(argv[1], "convert") == 0 ||
	    strcmp(argv[1], "average") == 0 ||
	    strcmp(argv[1], "export") == 0 ||
	    strcmp(argv[1], "import") == 0) {
		for (int i = 2; i < argc; i++)
			if (strcmp(argv[i], "-h") == 0)
				cli_help();
		cli_not_built(argv[1]);
	}
	cli_bad_usage("unknown command '%s'", argv[1]);
}
