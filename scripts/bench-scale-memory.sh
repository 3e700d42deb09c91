#!/usr/bin/env bash
# bench-scale-memory.sh: peak RSS of the real push, pull, check and prune
# (issue 15, item 1) as the repository and the dump grow, with the index
# in its local cache (--cache-dir, the default) and, for comparison, in
# memory (--cache-dir none).
#
# Repository rows, for each of CHUNKS: internal/cmd/indexgen fills a new
# local repository with index objects listing that many random chunks
# (sparse packs of the right sizes; no data, no backups), then a
# generated dump of DUMP (random content) is pushed into it, pulled,
# checked, and pruned with --keep-last 1 (GC walks every indexed chunk;
# the generated packs are unreferenced and deleted). The cache is built by
# the first command (push) and reused by the others.
# Dump rows, for each of DUMPS: a new repository, push of a generated
# dump of that size (CONTENT, default random; with ZST=1 stored as
# .vma.zst, as vzdump --compress zstd writes it, to save disk space), pull
# (to /dev/null), check, prune.
#
#   scripts/bench-scale-memory.sh                       # CHUNKS="1M 10M 50M" DUMP=1G, DUMPS="4G 16G"
#   CHUNKS= DUMPS="64G" CONTENT=text ZST=1 scripts/bench-scale-memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CHUNKS=${CHUNKS-1M 10M 50M}
DUMP=${DUMP:-1G}
DUMPS=${DUMPS-4G 16G}
CONTENT=${CONTENT:-random}
MEMORY_TOO=${MEMORY_TOO-1M 10M}
BENCH_DIR=${BENCH_DIR:-/var/tmp/vmasync-bench}
export PATH=$PATH:/usr/local/go/bin
[ -x /usr/bin/time ] || { echo "bench-scale-memory.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
W=$(mktemp -d "$BENCH_DIR/scalemem.XXXXXX")
trap 'rm -rf "$W"' EXIT
go build -o "$W/" ./cmd/vmasync ./internal/cmd/vmagen ./internal/cmd/indexgen
STEM=vzdump-qemu-100-2026_11_20-01_00_00

# run LABEL ROWNAME CMD...: one table row: wall seconds and peak RSS of CMD.
run() {
	local label=$1 row=$2
	shift 2
	sync
	/usr/bin/time -o "$W/time" -f "%e %M" "$@" >"$W/out" 2>&1 || { echo "FAILED: $*" >&2; cat "$W/out" >&2; exit 1; }
	local secs kib
	read -r secs kib <"$W/time"
	awk -v r="$row" -v l="$label" -v t="$secs" -v k="$kib" 'BEGIN { printf "| %s | %s | %.1f | %.0f |\n", r, l, t, k / 1024 }'
}

# cycle ROW REPO CACHE: push, pull, check, prune of the dump in $W/in.
cycle() {
	local row=$1 repo=$2 cache=$3
	run push "$row" "$W/vmasync" push -q --cache-dir "$cache" "$W/in" "$repo"
	run pull "$row" sh -c '"$0" pull -q --cache-dir "$1" "$2" 100 - >/dev/null' "$W/vmasync" "$cache" "$repo"
	run check "$row" "$W/vmasync" check -q --cache-dir "$cache" "$repo"
	run "prune --keep-last 1" "$row" "$W/vmasync" prune -q --keep-last 1 --cache-dir "$cache" "$repo"
}

echo "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; vmasync $(git rev-parse --short HEAD); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| repository / dump | command | wall s | peak RSS MiB |"
echo "| --- | --- | --- | --- |"
if [ -n "$CHUNKS" ]; then
	mkdir -p "$W/in"
	"$W/vmagen" -disks "drive-scsi0:$DUMP:$CONTENT" -order proxmox -seed 5 -o "$W/in/$STEM.vma"
	for n in $CHUNKS; do
		for mode in cache memory; do
			if [ $mode = memory ] && [[ " $MEMORY_TOO " != *" $n "* ]]; then
				continue
			fi
			cache=$W/cache
			[ $mode = memory ] && cache=none
			"$W/vmasync" init -q "$W/repo" >/dev/null
			"$W/indexgen" -dir "$W/repo" -chunks "$n" >/dev/null
			cycle "$n chunks indexed, a $DUMP dump, index: $mode" "$W/repo" "$cache"
			rm -rf "$W/repo" "$W/cache"
		done
	done
	rm -rf "$W/in"
fi
for d in $DUMPS; do
	mkdir -p "$W/in"
	if [ -n "${ZST:-}" ]; then
		"$W/vmagen" -disks "drive-scsi0:$d:$CONTENT" -order proxmox -seed 6 -o - | zstd -q -1 -T0 -o "$W/in/$STEM.vma.zst"
	else
		"$W/vmagen" -disks "drive-scsi0:$d:$CONTENT" -order proxmox -seed 6 -o "$W/in/$STEM.vma"
	fi
	cycle "a $d dump ($CONTENT), new repository, index: cache" "$W/repo" "$W/cache"
	rm -rf "$W/in" "$W/repo" "$W/cache"
done
