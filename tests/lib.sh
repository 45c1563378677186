# lib.sh: TAP helpers for the shell tests.  Source it first:
#   . "${0%/*}/../lib.sh"
# Each test runs in a scratch directory of its own ($T), removed at exit;
# the programs are on PATH from $VESPER_BIN.
set -u
: "${VESPER_BIN:?run the tests through make test}"
: "${VESPER_SRC:?run the tests through make test}"
PATH="$VESPER_BIN:$PATH"
export PATH
# Programs that exit on purpose leave memory the kernel frees; LeakSanitizer
# judges the library in the unit tests.
ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0"
export ASAN_OPTIONS
T=$(mktemp -d "${TMPDIR:-/tmp}/vesper-test.XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
tap_n=0
tap_fail=0

ok() {	# ok COND-STATUS DESCRIPTION
	tap_n=$((tap_n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $tap_n - $2"
	else
		echo "not ok $tap_n - $2"
		tap_fail=$((tap_fail + 1))
	fi
}

diag() { printf '%s\n' "$*" | sed 's/^/# /'; }

skip() {	# skip DESCRIPTION REASON
	tap_n=$((tap_n + 1))
	echo "ok $tap_n - $1 # SKIP $2"
}

# run EXPECTED-STATUS CMD...: run CMD with its stdout in out, stderr in err,
# and check its exit status.
run() {
	want=$1
	shift
	"$@" >out 2>err
	got=$?
	if [ "$got" -eq "$want" ]; then
		ok 0 "exit $want: $*"
	else
		ok 1 "exit $want: $*"
		diag "exit status $got; stderr:"
		diag "$(head -c 2000 err)"
	fi
}

# like FILE REGEX DESCRIPTION: FILE has a line matching the extended REGEX.
like() {
	if grep -Eq -- "$2" "$1"; then
		ok 0 "$3"
	else
		ok 1 "$3"
		diag "no line of $1 matches /$2/; it holds:"
		diag "$(head -c 2000 "$1")"
	fi
}

unlike() {
	if grep -Eq -- "$2" "$1"; then
		ok 1 "$3"
		diag "$1 matches /$2/"
	else
		ok 0 "$3"
	fi
}

# same FILE1 FILE2 DESCRIPTION
same() {
	if cmp -s "$1" "$2"; then ok 0 "$3"; else ok 1 "$3"; diag "$1 and $2 differ"; fi
}

have_python() { python3 -c "import $1" 2>/dev/null; }

done_testing() {
	echo "1..$tap_n"
	[ "$tap_fail" -eq 0 ]
}
