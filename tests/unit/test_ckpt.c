/* test_ckpt.c: checkpoint directories: exact round trip, the latest link,
 * keeping the last K, and every kind of damaged checkpoint refused with an
 * error naming the file. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/ckpt.h"
#include "../../lib/safetensors.h"
#include "../../lib/verr.h"
#include "../../lib/vio.h"
#include "tap.h"

static char root[] = "/tmp/vesper-test-ckpt.XXXXXX";

static void
cfg_tiny(struct vlm_config *c)
{
	vlm_preset("tiny", 300, c);
	c->layers = 2;
	c->dim = 16;
	c->heads = 2;
	c->kv_heads = 1;
	c->hidden = 24;
}

static int
count_entries(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
			n++;
	closedir(d);
	return n;
}

/* Overwrite len bytes at off of path (off < 0: from the end), or truncate
 * it to off when data is NULL. */
static void
damage(const char *path, long off, const void *data, size_t len)
{
	char *buf;
	size_t n;
	if (v_slurp(path, 0, &buf, &n) != V_OK)
		return;
	size_t at = off < 0 ? n - (size_t)-off : (size_t)off;
	FILE *fp = fopen(path, "wb");
	if (data == NULL) {
		fwrite(buf, 1, at, fp);
	} else {
		memcpy(buf + at, data, len);
		fwrite(buf, 1, n, fp);
	}
	fclose(fp);
	free(buf);
}

static void
copy(const char *from, const char *to)
{
	char *buf;
	size_t n;
	if (v_slurp(from, 0, &buf, &n) != V_OK)
		return;
	FILE *fp = fopen(to, "wb");
	fwrite(buf, 1, n, fp);
	fclose(fp);
	free(buf);
}

int
main(void)
{
	struct vlm_config c;
	struct ckpt ck;
	char out[256], path[600], p2[600];
	const char *tok = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

	if (mkdtemp(root) == NULL)
		return 1;
	snprintf(out, sizeof out, "%s/out", root);
	cfg_tiny(&c);
	size_t P = vlm_param_count(&c);
	float *p = malloc(P * 4), *m = malloc(P * 4), *v = malloc(P * 4);
	for (size_t i = 0; i < P; i++) {
		p[i] = (float)i * 1e-3f - 1;
		m[i] = -(float)i;
		v[i] = 1.0f / (float)(i + 1);
	}
	p[7] = -0.0f;	/* bits, not values: -0 must stay -0 */

	for (long s = 10; s <= 50; s += 10)
		is_int(ckpt_save(out, &c, tok, s, p, m, v, "{\"step\":1}", 3), V_OK,
		    "save step %ld", s);
	is_int(count_entries(out, "step-"), 3, "only the last 3 checkpoints are kept");
	is_int(count_entries(out, "."), 2, "no temporary left behind (just . and ..)");
	snprintf(path, sizeof path, "%s/step-00000020", out);
	ok(access(path, F_OK) != 0, "the oldest were removed");
	char lk[64] = "";
	snprintf(path, sizeof path, "%s/latest", out);
	ssize_t ln = readlink(path, lk, sizeof lk - 1);
	if (ln > 0)
		lk[ln] = '\0';
	is_str(lk, "step-00000050", "latest is a relative link to the newest");

	is_int(ckpt_load(out, &ck), V_OK, "load the output directory (its latest)");
	is_int(ck.step, 50, "step from the metadata");
	is_str(ck.tokenizer, tok, "tokenizer hash");
	ok(ck.nparams == P && memcmp(ck.params, p, P * 4) == 0,
	    "parameters round-trip bit for bit");
	ok(memcmp(ck.m, m, P * 4) == 0 && memcmp(ck.v, v, P * 4) == 0,
	    "both moments round-trip bit for bit");
	is_str(ck.cursor, "{\"step\":1}", "cursor text kept as written");
	ok(ck.cfg.layers == 2 && ck.cfg.kv_heads == 1 && ck.cfg.vocab == 384,
	    "configuration from the metadata");
	ckpt_free(&ck);

	/* The same step again (a rollback) replaces it. */
	p[0] = 42;
	is_int(ckpt_save(out, &c, "", 50, p, m, v, "{}", 3), V_OK, "save step 50 again");
	is_int(ckpt_load(out, &ck), V_OK, "load it");
	ok(ck.params[0] == 42 && ck.tokenizer[0] == '\0', "the new one replaced the old");
	ckpt_free(&ck);

	snprintf(path, sizeof path, "%s/step-00000050/model.safetensors", out);
	is_int(ckpt_load(path, &ck), V_OK, "a bare .safetensors loads the model");
	ok(ck.m == NULL && ck.cursor == NULL, "without optimizer or cursor");
	ckpt_free(&ck);
	struct st_file sf;
	if (ok(st_open(&sf, path) == V_OK, "the model is a safetensors file")) {
		const struct st_tensor *t = st_find(&sf, "model.norm.weight");
		ok(t && t->ndim == 1 && t->shape[0] == 16, "norms are 1-D (C)");
		t = st_find(&sf, "model.layers.1.self_attn.k_proj.weight");
		ok(t && t->ndim == 2 && t->shape[0] == 8 && t->shape[1] == 16,
		    "k_proj is (KV*hd, C)");
		is_str(st_meta(&sf, "vesper.step"), "50", "vesper.step metadata");
		st_close(&sf);
	}

	/* Damage, one kind at a time, on a fresh copy each. */
	snprintf(path, sizeof path, "%s/step-00000040/optimizer.bin", out);
	damage(path, 100, "\x55", 1);
	snprintf(p2, sizeof p2, "%s/step-00000040", out);
	is_int(ckpt_load(p2, &ck), V_ERR_CHECKSUM, "a flipped byte in the moments");
	ok(strstr(v_errmsg(V_ERR_CHECKSUM), "optimizer.bin") != NULL,
	    "the error names optimizer.bin");
	damage(path, -20, NULL, 0);
	is_int(ckpt_load(p2, &ck), V_ERR_TRUNCATED, "a truncated optimizer file");
	damage(path, 0, "XXXX", 4);
	is_int(ckpt_load(p2, &ck), V_ERR_FORMAT, "a bad magic");

	snprintf(path, sizeof path, "%s/step-00000030/model.safetensors", out);
	snprintf(p2, sizeof p2, "%s/step-00000030", out);
	damage(path, -9, NULL, 0);
	int e = ckpt_load(p2, &ck);
	ok(e < 0 && strstr(v_errmsg(e), "model.safetensors") != NULL,
	    "a truncated model is refused, naming the file (%s)", v_errmsg(e));
	snprintf(path, sizeof path, "%s/step-00000030/cursor.json", out);
	unlink(path);
	/* Restore the model from the good step 50 for the next cases. */
	snprintf(path, sizeof path, "%s/step-00000050/model.safetensors", out);
	snprintf(p2, sizeof p2, "%s/step-00000030/model.safetensors", out);
	copy(path, p2);
	snprintf(p2, sizeof p2, "%s/step-00000030/optimizer.bin", out);
	snprintf(path, sizeof path, "%s/step-00000050/optimizer.bin", out);
	copy(path, p2);
	snprintf(p2, sizeof p2, "%s/step-00000030", out);
	is_int(ckpt_load(p2, &ck), V_ERR_NOTFOUND, "a missing cursor.json");
	snprintf(path, sizeof path, "%s/step-00000030/cursor.json", out);
	FILE *fp = fopen(path, "w");
	fputs("[1,2", fp);
	fclose(fp);
	is_int(ckpt_load(p2, &ck), V_ERR_FORMAT, "a cursor that is not JSON");
	fp = fopen(path, "w");
	fputs("[1]", fp);
	fclose(fp);
	is_int(ckpt_load(p2, &ck), V_ERR_FORMAT, "a cursor that is not an object");

	/* A model of another shape under the same optimizer file. */
	struct vlm_config c2 = c;
	c2.hidden = 32;
	float *p3 = calloc(vlm_param_count(&c2), 4);
	float *m3 = calloc(vlm_param_count(&c2), 4);
	snprintf(p2, sizeof p2, "%s/other", root);
	is_int(ckpt_save(p2, &c2, "", 1, p3, m3, m3, "{}", 0), V_OK, "save another shape");
	snprintf(path, sizeof path, "%s/step-00000050/optimizer.bin", out);
	snprintf(p2, sizeof p2, "%s/other/step-00000001/optimizer.bin", root);
	copy(path, p2);
	snprintf(p2, sizeof p2, "%s/other/latest", root);
	is_int(ckpt_load(p2, &ck), V_ERR_MISMATCH, "moments of another model: %s",
	    v_errmsg(V_ERR_MISMATCH));
	free(p3);
	free(m3);

	/* A safetensors file that is not a Vesper checkpoint. */
	float one = 1;
	struct st_wtensor w = { .name = "x", .dtype = ST_F32, .ndim = 1,
	    .shape = { 1 }, .data = &one };
	snprintf(path, sizeof path, "%s/foreign.safetensors", root);
	st_write(path, &w, 1, NULL, 0);
	is_int(ckpt_load(path, &ck), V_ERR_FORMAT, "a foreign safetensors file");
	snprintf(path, sizeof path, "%s/nothing", root);
	is_int(ckpt_load(path, &ck), V_ERR_NOTFOUND, "a path that does not exist");

	/* What a writer killed mid-checkpoint left (its process is gone:
	 * pids do not reach 2^30 here) goes at the next save; another
	 * live writer's is left alone. */
	snprintf(path, sizeof path, "%s/.tmp-step-00000070.1073741823", out);
	mkdir(path, 0755);
	snprintf(p2, sizeof p2, "%s/.tmp-step-00000070.1073741823/m.tmp", out);
	fclose(fopen(p2, "w"));
	snprintf(p2, sizeof p2, "%s/.tmp-step-00000070.1", out);
	mkdir(p2, 0755);
	is_int(ckpt_save(out, &c, "", 55, p, m, v, "{}", 0), V_OK, "save step 55");
	ok(access(path, F_OK) != 0, "a dead writer's temporary directory is removed");
	ok(access(p2, F_OK) == 0, "a live process's (pid 1) is kept");
	rmdir(p2);

	/* A directory whose name only looks like a step is never pruned. */
	snprintf(path, sizeof path, "%s/step-12abc", out);
	mkdir(path, 0755);
	is_int(ckpt_save(out, &c, "", 60, p, m, v, "{}", 1), V_OK, "save with keep 1");
	ok(access(path, F_OK) == 0, "step-12abc is not ours and stays");
	is_int(count_entries(out, "step-0"), 1, "keep 1 leaves one checkpoint");

	free(p);
	free(m);
	free(v);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	if (system(cmd) != 0)
		diag("could not remove %s", root);
	return done_testing();
}
