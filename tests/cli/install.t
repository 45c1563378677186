#!/bin/sh
# make install puts the programs, the library, the CUDA backend (when
# built) and the man pages under PREFIX, and the installed programs run
# from there; make deps is silent when everything is present and says
# what is missing, without failing obscurely, when not root.
. "${0%/*}/../lib.sh"

B=$VESPER_BUILD
# shellcheck disable=SC2086
make -s -C "$VESPER_SRC" $VESPER_MAKEVARS install PREFIX="$T/inst" >out 2>err
ok $? "make install PREFIX=..."
for p in vfetch vtokenize vshard vtrain vckpt vquant vgen; do
	[ -x "$T/inst/bin/$p" ] && [ -f "$T/inst/share/man/man1/$p.1" ]
	ok $? "$p and its man page installed"
done
[ -f "$T/inst/share/man/man7/vesper.7" ] && [ -f "$T/inst/share/man/man5/vesper-tokens.5" ]
ok $? "sections 5 and 7 installed"
[ -f "$T/inst/lib/libvesper.a" ]
ok $? "the library installed"
run 0 "$T/inst/bin/vtrain" -h
if [ -f "$B/lib/vesper/libvesper_cuda.so" ]; then
	[ -f "$T/inst/lib/vesper/libvesper_cuda.so" ]
	ok $? "the CUDA backend installed beside the programs"
	if [ ! -e /dev/nvidiactl ]; then
		"$T/inst/bin/vtrain" --device cuda >out 2>err
		like err "no CUDA device" "the installed vtrain finds its backend and says there is no GPU"
	fi
fi

sh "$VESPER_SRC/tools/deps.sh" >out 2>err
ok $? "make deps succeeds when everything is present"
[ ! -s out ] && [ ! -s err ]
ok $? "and prints nothing"
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && command -v dpkg-query >/dev/null; then
	# Pretend a package is missing, as a user who is not root.
	mkdir fakebin
	cat > fakebin/dpkg-query <<'EOS'
#!/bin/sh
case "$*" in *libzstd-dev*) exit 1 ;; esac
exec /usr/bin/dpkg-query "$@"
EOS
	chmod +x fakebin/dpkg-query
	chmod 755 "$T"
	PATH="$T/fakebin:$PATH" setpriv --reuid=65534 --regid=65534 --clear-groups \
	    sh "$VESPER_SRC/tools/deps.sh" >out 2>err
	[ $? -eq 1 ]
	ok $? "make deps as a user fails when a package is missing"
	like err "missing Debian packages: libzstd-dev" "and names the package"
	like err "run as root" "and says how to fix it"
else
	skip "make deps as a user" "needs root and setpriv to switch user"
fi
done_testing
