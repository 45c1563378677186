#!/bin/sh
# Every program: -h prints the usage that its man page's SYNOPSIS shows and
# exits 0; a bad option exits 2 with the usage on stderr; no output appears
# on stdout for bad usage.
. "${0%/*}/../lib.sh"

synopsis() {	# the man page's SYNOPSIS, one line per form, spaces folded
	mandoc -T ascii "$VESPER_SRC/man/man1/$1.1" | perl -pe 's/.\x08//g' |
	    sed -n '/^SYNOPSIS/,/^DESCRIPTION/p' | sed '1d;$d' |
	    tr -s ' \t' ' ' | sed 's/^ //; s/ $//' | grep -v '^$'
}

for p in vfetch vtokenize vshard vtrain vckpt vquant vgen; do
	run 0 "$p" -h
	sed 's/^usage: //; s/^       //' out | tr -s ' ' > usage.txt
	synopsis "$p" > man.txt
	same usage.txt man.txt "$p -h matches the SYNOPSIS of $p(1)"
	run 2 "$p" --no-such-option
	like err '^usage: ' "$p: bad usage prints the usage on stderr"
	[ -s out ]; ok $((! $?)) "$p: nothing on stdout for bad usage"
	[ -f "$VESPER_SRC/man/man1/$p.1" ]; ok $? "$p has a man page"
done
done_testing
