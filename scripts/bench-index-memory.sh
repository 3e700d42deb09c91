#!/usr/bin/env bash
# bench-index-memory.sh: what the chunk index costs as the repository
# grows (issue 15, item 1). For each of SIZES, internal/cmd/indexgen
# writes a local repository whose index objects list that many random
# chunks (sparse packs of the right sizes, no chunk data, no backups).
# Then, each under /usr/bin/time (wall seconds, peak RSS):
#
#   mem          internal/cmd/indexbench -mode mem: the in-memory
#                index.Index loaded as LoadIndex loads it, LOOKUPS lookups
#                (half hits), every position walked (GC's plan)
#   disk build   indexbench -mode disk into an empty cache directory: the
#                index.DiskIndex built from the index objects (external
#                merge sort), then the same lookups and walk
#   disk reopen  the same again: the cached run reused, nothing read
#   disk verify  reopened with every block checked first (DiskOptions.Verify)
#   disk push    after indexgen added one index object of 131,072 new
#                chunks (a night's push of ~1 GiB of new data): reopened,
#                that object read into a second run
#   check        the real `vmasync check` of commit REV (default HEAD)
#   snapshots    the real `vmasync snapshots` of REV
#
# check and snapshots run only for CHECK_SIZES. Files go under BENCH_DIR
# and are deleted at the end (50M: about 2.5 GB of index objects, as much
# again for the cache, and as much for the sort's spills while building).
#
#   scripts/bench-index-memory.sh                  # 1M 10M 50M
#   SIZES="1M" LOOKUPS=100000 scripts/bench-index-memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES-1M 10M 50M}
CHECK_SIZES=${CHECK_SIZES-$SIZES}
LOOKUPS=${LOOKUPS-1000000}
BENCH_DIR=${BENCH_DIR:-/var/tmp/vmasync-bench}
export PATH=$PATH:/usr/local/go/bin
[ -x /usr/bin/time ] || { echo "bench-index-memory.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
W=$(mktemp -d "$BENCH_DIR/indexmem.XXXXXX")
trap 'rm -rf "$W"' EXIT
# vmasync of a commit (REV, default HEAD), not of a working tree that may
# hold someone's unfinished change.
REV=${REV:-HEAD}
mkdir "$W/src"
git archive "$REV" | tar -x -C "$W/src"
(cd "$W/src" && go build -o "$W/" ./cmd/vmasync)
go build -o "$W/" ./internal/cmd/indexgen ./internal/cmd/indexbench

# measure LABEL SIZE CMD...: one table row with CMD's wall time, peak RSS
# and its output's key=value pairs (indexbench) or first line.
measure() {
	local label=$1 size=$2
	shift 2
	/usr/bin/time -o "$W/time" -f "%e %M" "$@" >"$W/out" 2>&1 || { cat "$W/out" >&2; exit 1; }
	local secs kib
	read -r secs kib <"$W/time"
	awk -v l="$label" -v s="$size" -v t="$secs" -v k="$kib" -v o="$(head -c 300 "$W/out" | tr '\n' ' ')" \
		'BEGIN { printf "| %s | %s | %.2f | %.0f | %s |\n", s, l, t, k / 1024, o }'
}

echo "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; vmasync $(git rev-parse --short "$REV"); $(uptime)"
echo
echo "| chunks | what | wall s | peak RSS MiB | output |"
echo "| --- | --- | --- | --- | --- |"
for s in $SIZES; do
	R=$W/repo-$s
	"$W/vmasync" init "$R" >/dev/null 2>&1
	"$W/indexgen" -dir "$R" -chunks "$s" -hashes "$W/hashes" >"$W/gen"
	objs=$(du -sb "$R/index" | cut -f1)
	measure mem "$s" "$W/indexbench" -mode mem -dir "$R" -hashes "$W/hashes" -lookups "$LOOKUPS"
	measure "disk build" "$s" "$W/indexbench" -mode disk -dir "$R" -cache "$W/cache" -hashes "$W/hashes" -lookups "$LOOKUPS"
	measure "disk reopen" "$s" "$W/indexbench" -mode disk -dir "$R" -cache "$W/cache" -hashes "$W/hashes" -lookups "$LOOKUPS"
	measure "disk verify" "$s" "$W/indexbench" -mode disk -verify -dir "$R" -cache "$W/cache" -hashes "$W/hashes" -lookups "$LOOKUPS"
	cache=$(du -sb "$W/cache" | cut -f1)
	"$W/indexgen" -dir "$R" -chunks 131072 -seed 2 >/dev/null
	measure "disk push" "$s" "$W/indexbench" -mode disk -dir "$R" -cache "$W/cache" -hashes "$W/hashes" -lookups "$LOOKUPS"
	echo "| $s | sizes | | | $(cat "$W/gen"); index objects $((objs / 1048576)) MiB, cache $((cache / 1048576)) MiB |"
	if [[ " $CHECK_SIZES " == *" $s "* ]]; then
		measure "vmasync check" "$s" "$W/vmasync" check "$R"
		measure "vmasync snapshots" "$s" "$W/vmasync" snapshots "$R"
	fi
	rm -rf "$R" "$W/cache" "$W/hashes"
done
