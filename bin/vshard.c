/* vshard.c: cut a token stream into checksummed zstd shards. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int
main(int argc, char **argv)
{
	cli_init("vshard",
	"vshard [-h] [options] -o dir [file]\n"
	"vshard verify [-h] dir\n"
	"vshard cat [-h] dir\n"
	"vshard stats [-h] dir");
	cli_signals();
	if (argc < 2)
		cli_usage();
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
		cli_help();
	if (strcmp(argv[1], "verify") == 0 ||
	    strcmp(argv[1], "cat") == 0 ||
	    strcmp(argv[1], "stats") == 0) {
		for (int i = 2; i < argc; i++)
			if (strcmp(argv[i], "-h") == 0)
				cli_help();
		cli_not_built(argv[1]);
	}
	if (strcmp(argv[1], "-o") == 0)
		cli_not_built("sharding");
	cli_bad_usage("unknown command '%s'", argv[1]);
}
