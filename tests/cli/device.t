#!/bin/sh
# Backend choice on a machine without a GPU (CI): auto falls back to the
# CPU with one line on stderr; --device cuda is a clear error; a bad device
# name is bad usage.
. "${0%/*}/../lib.sh"

if [ -e /dev/nvidia0 ] || [ -e /dev/nvidiactl ]; then
	skip "no-GPU behaviour" "this machine has a GPU"
	done_testing
	exit
fi
for p in vtrain vgen; do
	"$p" --device cuda -h >/dev/null 2>&1
	run 1 "$p" --device cuda
	like err "^$p: (no CUDA device|this build has no CUDA backend)" "$p --device cuda without a GPU says so"
	n=$(grep -c '' err)
	[ "$n" -eq 1 ]; ok $? "$p --device cuda: one line of error"
	"$p" --device auto >out 2>err
	like err "^$p: .*; using the CPU$" "$p --device auto falls back to the CPU with a line saying why"
	run 2 "$p" --device tpu
	like err "unknown device 'tpu'" "$p --device tpu is bad usage"
done
done_testing
