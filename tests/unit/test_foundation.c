/* test_foundation.c: errors, option numbers, atomic output files, JSON and
 * the progress reporter. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../lib/verr.h"
#include "../../lib/vhash.h"
#include "../../lib/vio.h"
#include "../../lib/vjson.h"
#include "../../lib/vopt.h"
#include "../../lib/vprogress.h"
#include "tap.h"

static int
exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

static int
count_tmp(const char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "ls %s | grep -c '\\.tmp\\.' >/dev/null", dir);
	return system(cmd) == 0;
}

static void
test_errors(void)
{
	is_str(v_strerror(V_ERR_TRUNCATED), "input ends early", "error names");
	is_str(v_strerror(-999), "unknown error", "an unknown value has a name");
	is_str(v_strerror(5), "unknown error", "a positive value has a name");
	is_int(v_error(V_ERR_FORMAT, "%s:%d: bad", "f", 3), V_ERR_FORMAT,
	    "v_error returns its value");
	is_str(v_errmsg(V_ERR_FORMAT), "f:3: bad", "the detail is kept");
	is_str(v_errmsg(V_ERR_IO), "input/output error",
	    "another value gets its own name, not a stale detail");
	errno = ENOENT;
	v_error_errno(V_ERR_IO, "open x");
	is_str(v_errmsg(V_ERR_IO), "open x: No such file or directory",
	    "v_error_errno adds the system's reason");
	v_errclear();
	is_str(v_errmsg(V_ERR_IO), "input/output error", "v_errclear forgets");
}

static void
test_numbers(void)
{
	long long i;
	double d;
	uint64_t u;

	is_int(v_parse_int("42", 0, 100, &i), V_OK, "an integer");
	is_int(i, 42, "its value");
	is_int(v_parse_int("-7", -10, 10, &i), V_OK, "a negative integer");
	is_int(v_parse_int("4x", 0, 100, &i), V_ERR_ARG, "trailing junk refused");
	is_int(v_parse_int("", 0, 100, &i), V_ERR_ARG, "empty refused");
	is_int(v_parse_int("101", 0, 100, &i), V_ERR_RANGE, "above the range refused");
	is_int(v_parse_int("99999999999999999999", 0, INT64_MAX, &i), V_ERR_RANGE,
	    "overflow refused");
	is_int(v_parse_real("3e-4", 0, 1, &d), V_OK, "a real");
	is_near(d, 3e-4, 1e-12, "its value");
	is_int(v_parse_real("nan", 0, 1, &d), V_ERR_ARG, "NaN refused");
	is_int(v_parse_real("inf", 0, 1e300, &d), V_ERR_ARG, "infinity refused");
	is_int(v_parse_real("2", 0, 1, &d), V_ERR_RANGE, "out of range refused");
	is_int(v_parse_count("64M", 0, UINT64_MAX, &u), V_OK, "a count with M");
	is_int(u, 64000000, "M is a million");
	is_int(v_parse_count("1Gi", 0, UINT64_MAX, &u), V_OK, "a count with Gi");
	is_int(u, 1073741824, "Gi is 2^30");
	is_int(v_parse_count("3k", 0, UINT64_MAX, &u), V_OK, "k");
	is_int(u, 3000, "k is a thousand");
	is_int(v_parse_count("5X", 0, UINT64_MAX, &u), V_ERR_ARG, "unknown suffix refused");
	is_int(v_parse_count("-5", 0, UINT64_MAX, &u), V_ERR_ARG, "a negative count refused");
	is_int(v_parse_count("20000000000T", 0, UINT64_MAX, &u), V_ERR_RANGE,
	    "overflow through the suffix refused");
}

static void
test_atomic(const char *dir)
{
	char path[512], buf[64];
	struct v_atomic a;
	FILE *fp;

	snprintf(path, sizeof path, "%s/out.bin", dir);
	is_int(v_atomic_open(&a, path), V_OK, "atomic open");
	fputs("half", a.fp);
	fflush(a.fp);
	ok(!exists(path), "nothing under the final name while writing");
	v_atomic_abort(&a);
	ok(!exists(path), "abort leaves no final file");
	ok(!count_tmp(dir), "abort removes the temporary file");

	is_int(v_atomic_open(&a, path), V_OK, "atomic open again");
	fputs("complete", a.fp);
	is_int(v_atomic_commit(&a), V_OK, "commit");
	fp = fopen(path, "rb");
	ok(fp != NULL && fgets(buf, sizeof buf, fp) && strcmp(buf, "complete") == 0,
	    "the committed file holds what was written");
	if (fp)
		fclose(fp);
	ok(!count_tmp(dir), "no temporary file is left after commit");

	/* A child killed by a signal half-way leaves the old file intact
	 * and, through the cleanup, no temporary. */
	pid_t pid = fork();
	if (pid == 0) {
		struct v_atomic b;
		if (v_atomic_open(&b, path) != V_OK)
			_exit(3);
		fputs("partial", b.fp);
		fflush(b.fp);
		v_atomic_cleanup_all();	/* what the signal handler calls */
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	fp = fopen(path, "rb");
	ok(fp != NULL && fgets(buf, sizeof buf, fp) && strcmp(buf, "complete") == 0,
	    "an interrupted rewrite leaves the previous file");
	if (fp)
		fclose(fp);
	ok(!count_tmp(dir), "the cleanup removed the interrupted temporary");

	snprintf(path, sizeof path, "%s/no/such/dir/x", dir);
	is_int(v_atomic_open(&a, path), V_ERR_IO, "a missing directory is an error");
	snprintf(path, sizeof path, "%s/a/b/c", dir);
	is_int(v_mkdir_p(path), V_OK, "mkdir -p");
	ok(exists(path), "the directory exists");
	is_int(v_mkdir_p(path), V_OK, "mkdir -p of an existing directory");
}

static void
test_io(const char *dir)
{
	char path[512], *buf;
	size_t len;
	unsigned char b[8];

	snprintf(path, sizeof path, "%s/five", dir);
	FILE *fp = fopen(path, "wb");
	fputs("abcde", fp);
	fclose(fp);
	is_int(v_slurp(path, 0, &buf, &len), V_OK, "slurp");
	ok(len == 5 && strcmp(buf, "abcde") == 0, "slurp reads it all");
	free(buf);
	is_int(v_slurp(path, 3, &buf, &len), V_ERR_RANGE, "slurp refuses beyond a limit");
	is_int(v_slurp("/nonexistent/x", 0, &buf, &len), V_ERR_NOTFOUND,
	    "slurp of a missing file");
	fp = fopen(path, "rb");
	is_int(v_read_exact(fp, b, 8, "five"), V_ERR_TRUNCATED, "short read detected");
	fclose(fp);

	const unsigned char *m;
	size_t msize;
	is_int(v_map_file(path, &m, &msize), V_OK, "map a file");
	ok(msize == 5 && memcmp(m, "abcde", 5) == 0, "the mapping holds the file");
	v_unmap_file(m, msize);
	is_int(v_map_file(dir, &m, &msize), V_ERR_FORMAT, "a directory is not mapped");
	is_int(v_map_file("/nonexistent/x", &m, &msize), V_ERR_NOTFOUND,
	    "a missing file is not mapped");
	snprintf(path, sizeof path, "%s/empty", dir);
	fclose(fopen(path, "wb"));
	ok(v_map_file(path, &m, &msize) == V_OK && m == NULL && msize == 0,
	    "an empty file maps to nothing");
	v_put_u32(b, 0xA1B2C3D4u);
	ok(b[0] == 0xD4 && b[3] == 0xA1, "little-endian store");
	is_int(v_get_u32(b), 0xA1B2C3D4u, "little-endian load");
	v_put_u64(b, 0x0102030405060708ull);
	ok(v_get_u64(b) == 0x0102030405060708ull && b[0] == 8, "64-bit round trip");
}

static void
test_json(void)
{
	json_t *v;
	const char *s;
	size_t n;
	long long i;

	const char *doc = "{\"text\":\"é\\u0000x\",\"n\":3}";
	is_int(v_json_parse(doc, strlen(doc), "doc", 7, &v), V_OK,
	    "parse a document");
	is_int(v_json_str(v, "text", &s, &n), V_OK, "a string member");
	is_int(n, 4, "its length counts an embedded NUL");
	is_int(v_json_int(v, "n", &i), V_OK, "an integer member");
	is_int(v_json_str(v, "n", &s, &n), V_ERR_FORMAT, "a number is not a string");
	is_int(v_json_str(v, "id", &s, &n), V_ERR_NOTFOUND, "a missing member");
	json_decref(v);
	is_int(v_json_parse("{\"text\": ", 9, "doc", 12, &v), V_ERR_FORMAT,
	    "truncated JSON refused");
	ok(strstr(v_errmsg(V_ERR_FORMAT), "doc:12:") != NULL,
	    "the error names the file and line (%s)", v_errmsg(V_ERR_FORMAT));
	is_int(v_json_parse("[1,2]", 5, "doc", 1, &v), V_OK, "an array parses");
	is_int(v_json_int(v, "n", &i), V_ERR_FORMAT, "but is not an object");
	json_decref(v);
}

static void
test_hash(const char *dir)
{
	unsigned char b[4] = { 0x00, 0x9f, 0xa0, 0xff }, back[4], d[32];
	char hex[9], path[512];

	v_hex_encode(b, 4, hex);
	is_str(hex, "009fa0ff", "hex: lowercase, two digits a byte");
	ok(v_hex_decode("009fa0ff", back, 4, 0) == 0 && memcmp(back, b, 4) == 0,
	    "hex: decodes back");
	is_int(v_hex_decode("009FA0FF", back, 4, 0), -1, "hex: upper case refused when strict");
	ok(v_hex_decode("009FA0FF", back, 4, 1) == 0 && memcmp(back, b, 4) == 0,
	    "hex: upper case taken when asked");
	is_int(v_hex_decode("009fa0f", back, 4, 1), -1, "hex: a short string refused");
	is_int(v_hex_decode("009fa0fg", back, 4, 1), -1, "hex: a non-digit refused");
	snprintf(path, sizeof path, "%s/abc", dir);
	FILE *fp = fopen(path, "wb");
	fputs("abc", fp);
	fclose(fp);
	is_int(v_sha256_file(path, d), V_OK, "sha256 of a file");
	char dh[65];
	v_hex_encode(d, 32, dh);
	/* FIPS 180-2, appendix B.1: SHA-256("abc"). */
	is_str(dh, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
	    "sha256 of \"abc\" is the standard's value");
	is_int(v_sha256_file("/nonexistent/x", d), V_ERR_NOTFOUND, "sha256 of a missing file");
}

static void
test_progress(const char *dir)
{
	char path[512], buf[512];
	struct v_progress p;

	snprintf(path, sizeof path, "%s/progress", dir);
	FILE *fp = fopen(path, "w+");
	v_progress_init(&p, fp, V_PROGRESS_OFF, "encode", "docs", V_UNIT_ITEMS, 10);
	v_progress_update(&p, 5);
	v_progress_finish(&p);
	fflush(fp);
	ok(ftell(fp) == 0, "off: nothing written");
	v_progress_init(&p, fp, V_PROGRESS_ON, "encode", "docs", V_UNIT_ITEMS, 10);
	v_progress_update(&p, 10);
	v_progress_finish(&p);
	rewind(fp);
	if (fgets(buf, sizeof buf, fp) == NULL)
		buf[0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	ok(strstr(buf, "encode: 100.0%") &&
	    strstr(buf, "10/10 docs"), "on: a final line with the count (%s)", buf);
	fclose(fp);
	is_str(v_human(1234567, V_UNIT_BYTES, buf, sizeof buf), "1.2 MB", "bytes in SI");
	is_str(v_human(999, V_UNIT_ITEMS, buf, sizeof buf), "999", "small counts as they are");
}

int
main(void)
{
	char dir[] = "/tmp/vesper-unit.XXXXXX";

	if (mkdtemp(dir) == NULL)
		return 1;
	test_errors();
	test_numbers();
	test_atomic(dir);
	test_io(dir);
	test_json();
	test_hash(dir);
	test_progress(dir);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		diag("could not remove %s", dir);
	return done_testing();
}
