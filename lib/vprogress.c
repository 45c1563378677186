/* vprogress.c: one-line progress with rate and time left. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "vio.h"
#include "vprogress.h"

const char *
v_human(double n, int kind, char *buf, size_t len)
{
	static const char *const si[] = { "", " k", " M", " G", " T", " P" };
	static const char *const by[] = { " B", " KB", " MB", " GB", " TB", " PB" };
	int i = 0;

	while (fabs(n) >= 1000.0 && i < 5) {
		n /= 1000.0;
		i++;
	}
	if (i == 0 && kind != V_UNIT_BYTES)
		snprintf(buf, len, "%.0f", n);
	else
		snprintf(buf, len, i == 0 ? "%.0f%s" : "%.1f%s", n,
		    kind == V_UNIT_BYTES ? by[i] : si[i]);
	return buf;
}

static void
fmt_time(double s, char *buf, size_t len)
{
	if (!(s >= 0) || s > 99 * 3600.0) {
		snprintf(buf, len, "--:--");
		return;
	}
	long t = (long)(s + 0.5);
	if (t >= 3600)
		snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(buf, len, "%02ld:%02ld", t / 60, t % 60);
}

void
v_progress_init(struct v_progress *p, FILE *out, int mode, const char *label,
    const char *unit, int kind, uint64_t total)
{
	memset(p, 0, sizeof *p);
	p->out = out;
	p->label = label;
	p->unit = unit ? unit : "";
	p->kind = kind;
	p->total = total;
	p->tty = isatty(fileno(out));
	p->enabled = mode == V_PROGRESS_ON || (mode == V_PROGRESS_AUTO && p->tty);
	p->t0 = p->tlast = v_now();
}

static void
draw(struct v_progress *p, double now, int final)
{
	char a[32], r[32], t[32], line[256];
	double el = now - p->t0;
	double rate = el > 0 ? (double)p->done / el : 0;
	/* An empty unit ("" for bytes, which v_human already marks) takes
	 * no space. */
	const char *sp = *p->unit ? " " : "";

	v_human((double)p->done, p->kind, a, sizeof a);
	v_human(rate, p->kind, r, sizeof r);
	if (p->total > 0) {
		char tot[32];
		double pct = 100.0 * (double)p->done / (double)p->total;
		double left = rate > 0 ? (double)(p->total - (p->done < p->total ?
		    p->done : p->total)) / rate : -1;
		v_human((double)p->total, p->kind, tot, sizeof tot);
		fmt_time(final ? el : left, t, sizeof t);
		snprintf(line, sizeof line, "%s: %5.1f%% %s/%s%s%s, %s%s%s/s, %s %s",
		    p->label, pct > 100 ? 100 : pct, a, tot, sp, p->unit, r, sp, p->unit,
		    final ? "took" : "ETA", t);
	} else {
		fmt_time(el, t, sizeof t);
		snprintf(line, sizeof line, "%s: %s%s%s, %s%s%s/s, %s", p->label,
		    a, sp, p->unit, r, sp, p->unit, t);
	}
	if (p->tty)
		fprintf(p->out, "\r%s\033[K", line);
	else
		fprintf(p->out, "%s\n", line);
	fflush(p->out);
	p->drawn = p->tty;
}

void
v_progress_update(struct v_progress *p, uint64_t done)
{
	p->done = done;
	if (!p->enabled)
		return;
	double now = v_now();
	double every = p->tty ? 0.1 : 5.0;
	if (now - p->tlast < every)
		return;
	p->tlast = now;
	draw(p, now, 0);
}

void
v_progress_add(struct v_progress *p, uint64_t delta)
{
	v_progress_update(p, p->done + delta);
}

void
v_progress_finish(struct v_progress *p)
{
	if (!p->enabled)
		return;
	draw(p, v_now(), 1);
	if (p->drawn)
		fputc('\n', p->out);
	p->drawn = 0;
}
