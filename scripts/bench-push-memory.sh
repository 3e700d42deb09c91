#!/usr/bin/env bash
# bench-push-memory.sh: peak RSS of push as the data grows. What grows
# with the data is push's in-memory bookkeeping: the manifest (36 bytes
# per chunk), the chunks this push adds (until they are indexed, and in
# the in-memory index) and the repository index (docs/repository.md,
# Limits). Each archive is one data disk of random content.
#
# Day 1, for each of SIZES: every chunk is new (the worst case per byte);
# `push --dry-run` into an empty local remote does all the work of a
# push (chunking, hashing, compression, packing, indexing) except the
# upload, so the remote needs no disk space.
# Day 2, for each of DAY2_SIZES: a real push of day 1 into a local remote,
# then the measured push of day 2 (1 % of the clusters changed), which
# also loads day 1's manifest and index to compare against (needs three
# times the size in disk space).
#
#   scripts/bench-push-memory.sh               # day 1: 4G 12G 24G; day 2: 4G 12G
#   SIZES="2G 8G" DAY2_SIZES= scripts/bench-push-memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES-4G 12G 24G}
DAY2_SIZES=${DAY2_SIZES-4G 12G}
BENCH_DIR=${BENCH_DIR:-/var/tmp/vmasync-bench}
export PATH=$PATH:/usr/local/go/bin
[ -x /usr/bin/time ] || { echo "bench-push-memory.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
W=$(mktemp -d "$BENCH_DIR/pushmem.XXXXXX")
trap 'rm -rf "$W"' EXIT
go build -o "$W/vmasync" ./cmd/vmasync
go build -o "$W/vmagen" ./internal/cmd/vmagen
D1=vzdump-qemu-100-2026_11_20-01_00_00.vma
D2=vzdump-qemu-100-2026_11_21-01_00_00.vma

# measure LABEL SIZE DUMP ARGS...: runs push ARGS under /usr/bin/time and
# prints a table row for DUMP (its size, the new bytes push reports).
measure() {
	local label=$1 size=$2 dump=$3
	shift 3
	cat "$dump" >/dev/null
	sync
	/usr/bin/time -o "$W/time" -f "%e %M" "$W/vmasync" push --json "$@" >"$W/out.json"
	local secs kib bytes new
	read -r secs kib <"$W/time"
	bytes=$(stat -c %s "$dump")
	new=$(sed -n 's/.*"new_bytes": \([0-9]*\).*/\1/p' "$W/out.json" | tail -1)
	awk -v l="$label" -v s="$size" -v b="$bytes" -v n="$new" -v t="$secs" -v k="$kib" \
		'BEGIN { printf "| %s | %s random | %.0f | %.0f | %.2f | %.0f | %.0f |\n", l, s, b, n, t, b / t / 1e6, k / 1024 }'
}

echo "$(nproc) cores; vmasync $(git rev-parse --short HEAD 2>/dev/null || echo '?'); GOMEMLIMIT=${GOMEMLIMIT:-unset}"
echo
echo "| push | data disk | VMA bytes | new bytes | wall s | MB/s | peak RSS MiB |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for s in $SIZES; do
	mkdir -p "$W/in"
	"$W/vmagen" -disks "drive-scsi0:$s:random" -order proxmox -seed 5 -o "$W/in/$D1"
	measure "day 1, dry run" "$s" "$W/in/$D1" --dry-run "$W/in" "$W/remote"
	rm -rf "$W/in" "$W/remote"
done
for s in $DAY2_SIZES; do
	mkdir -p "$W/in" "$W/in2"
	"$W/vmagen" -disks "drive-scsi0:$s:random" -order proxmox -seed 5 -o "$W/in/$D1"
	"$W/vmagen" -disks "drive-scsi0:$s:random" -order proxmox -seed 5 -gen 1 -change 0.01 -o "$W/in2/$D2"
	"$W/vmasync" push -q "$W/in" "$W/remote" >/dev/null
	measure "day 2" "$s" "$W/in2/$D2" "$W/in2" "$W/remote"
	rm -rf "$W/in" "$W/in2" "$W/remote"
done
