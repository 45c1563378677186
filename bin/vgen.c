/* vgen.c: generate text with a VesperLM model. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "../lib/backend.h"
#include "../lib/verr.h"
#include "cli.h"

int
main(int argc, char **argv)
{
	cli_init("vgen",
	"vgen [-h] [--device auto|cpu|cuda] [options] -m model");
	cli_signals();
	enum v_device want = V_DEVICE_AUTO;
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "device", required_argument, NULL, 'D' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			cli_help();
		case 'D': {
			enum v_device d;
			int err = v_device_parse(optarg, &d);
			if (err)
				cli_bad_usage("--device: %s", v_errmsg(err));
			want = d;
			break;
		}
		default:
			cli_usage();
		}
	}
	struct v_backend be;
	int err = v_backend_open(want, &be);
	if (err)
		cli_fatal(err);
	if (be.note[0] != '\0')
		cli_warn("%s", be.note);
	cli_not_built("generation");
}
