#!/bin/sh
# The demo corpus in data/: in the Claire layout, clean UTF-8, and
# reproduced byte for byte by the tool that made it (as data/README.md
# says); the tool refuses malformed scene files with the file and line.
. "${0%/*}/../lib.sh"
D=$VESPER_SRC/data

for f in handwritten.txt generated.txt; do
	# Every line a turn "[Speaker:] text", or the blank line between two
	# dialogues; no blank line at the start or the end, none doubled.
	grep -Ev '^\[[^]]+:\] [^ ].*[^ ]$|^$' "$D/$f" > bad
	[ ! -s bad ]; ok $? "$f: every line is a speaker turn or a blank line"
	[ -s bad ] && diag "$(head -n 3 bad)"
	awk 'NR == 1 && /^$/ { bad = 1 } prev == "" && $0 == "" && NR > 1 { bad = 1 }
	    { prev = $0 } END { exit bad || prev == "" }' "$D/$f"
	ok $? "$f: dialogues separated by single blank lines"
	iconv -f UTF-8 -t UTF-8 "$D/$f" > /dev/null 2>&1
	ok $? "$f: valid UTF-8"
	! grep -q "'" "$D/$f"; ok $? "$f: the typographic apostrophe throughout"
	! LC_ALL=C grep -q "$(printf '\r')" "$D/$f"; ok $? "$f: no carriage returns"
	! grep -Eq '\{[a-z_0-9]+\}' "$D/$f"; ok $? "$f: no slot left unfilled"
done
n=$(awk 'BEGIN { RS = "" } END { print NR }' "$D/handwritten.txt" "$D/generated.txt")
[ "$n" -eq 642 ]; ok $? "data/: 642 dialogues (as data/README.md says)"
grep -q '\[LAUGHTER\]' "$D/generated.txt" && grep -q '\[NOISE\]' "$D/generated.txt" &&
    grep -q '\[PII\]' "$D/generated.txt"
ok $? 'generated.txt: [LAUGHTER], [NOISE] and [PII] occur'
bytes=$(cat "$D/handwritten.txt" "$D/generated.txt" | wc -c)
[ "$bytes" -gt 300000 ] && [ "$bytes" -lt 500000 ]
ok $? "data/: a few hundred KB ($bytes bytes)"

if ! command -v python3 > /dev/null 2>&1; then
	skip 'make_corpus.py reproduces generated.txt' 'no python3'
	done_testing
	exit
fi
python3 -c '
import sys, unicodedata
texts = [open(f, encoding="utf-8").read() for f in sys.argv[1:]]
sys.exit(any(t != unicodedata.normalize("NFC", t) for t in texts))' \
    "$D/handwritten.txt" "$D/generated.txt"
ok $? 'data/: text in NFC'
run 0 python3 "$D/make_corpus.py"
same out "$D/generated.txt" 'make_corpus.py reproduces generated.txt byte for byte'
run 0 python3 "$D/make_corpus.py" --seed 7 --dialogues 20
[ "$(awk 'BEGIN { RS = "" } END { print NR }' out)" -eq 20 ]
ok $? 'make_corpus.py: --dialogues sets the count'
! cmp -s out "$D/generated.txt"; ok $? 'make_corpus.py: another seed, other dialogues'

# Malformed scene files: refused, with the file and line named.
mkdir scenes
bad_scene() {	# bad_scene DESCRIPTION PATTERN: the file scenes/x.txt
	run 1 python3 "$D/make_corpus.py" --scenes scenes --dialogues 3
	like err "$2" "make_corpus.py: $1"
}
printf 'A: Bonjour !\n' > scenes/x.txt
bad_scene 'a turn before any scene' 'x.txt:1: text before the first scene'
printf '=== s\nA: Bonjour !\nthis is not a turn\n' > scenes/x.txt
bad_scene 'a line that is not a turn' 'x.txt:3: cannot parse'
printf '=== s\nA: Bonjour ! | Salut !\n&B: Bonjour.\n' > scenes/x.txt
bad_scene "an '&' turn whose alternatives do not pair up" "x.txt:3: '&' needs"
printf '=== s\nA@k: un | deux\nB@k: un\n' > scenes/x.txt
bad_scene 'labelled turns of different sizes' 'x.txt:3: @k turns need'
printf '=== s\nA: Bonjour {personne} !\n' > scenes/x.txt
bad_scene 'an unknown slot' 'unknown slot \{personne\}'
printf '=== s\nA: |  | \n' > scenes/x.txt
bad_scene 'a turn with no text' 'x.txt:2: a turn with no text'
done_testing
