/* vprogress.h: a one-line progress reporter on stderr.
 *
 * It redraws in place, at most ten times a second, only when its stream is
 * a terminal or when asked (V_PROGRESS_ON), and shows the count, the rate
 * and, when the total is known, the percentage and the time left.  With
 * V_PROGRESS_ON on a non-terminal it writes a plain line every few seconds
 * instead of redrawing.  This is the one part of the library that writes,
 * and it writes only to the stream it is given. */
#ifndef VESPER_VPROGRESS_H
#define VESPER_VPROGRESS_H

#include <stdint.h>
#include <stdio.h>

enum { V_PROGRESS_AUTO, V_PROGRESS_ON, V_PROGRESS_OFF };
enum { V_UNIT_ITEMS, V_UNIT_BYTES };

struct v_progress {
	FILE *out;
	const char *label;	/* "encode", "download tok.bpe" */
	const char *unit;	/* name of the items: "tokens", "docs" */
	int kind;		/* V_UNIT_ITEMS or V_UNIT_BYTES */
	int enabled;
	int tty;
	uint64_t total;		/* 0: unknown */
	uint64_t done;
	double t0, tlast;
	int drawn;		/* a line is on screen that finish must end */
};

void v_progress_init(struct v_progress *p, FILE *out, int mode,
    const char *label, const char *unit, int kind, uint64_t total);
void v_progress_update(struct v_progress *p, uint64_t done);
void v_progress_add(struct v_progress *p, uint64_t delta);
/* Draw the final state and end the line. */
void v_progress_finish(struct v_progress *p);

/* "12.3 MB", "4.5 k": a compact human form of n into buf. */
const char *v_human(double n, int kind, char *buf, size_t len);

#endif
