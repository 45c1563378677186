/* vfetch.c: download and unpack corpora as JSON Lines documents. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

int
main(int argc, char **argv)
{
	cli_init("vfetch",
	"vfetch [-h] [--offline] [--cache dir] [--endpoint url] source ...");
	cli_signals();
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },

		{ NULL, 0, NULL, 0 }
	};
	int c;

	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			cli_help();
		default:
			cli_usage();
		}
	}
	cli_not_built("fetching");
}
