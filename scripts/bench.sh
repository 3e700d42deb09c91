#!/usr/bin/env bash
# bench.sh: time vmasync against cp/cat/zstd on the same files in the same
# run, and measure peak memory. Results go to stdout as Markdown rows for
# docs/benchmarks.md.
#
#   scripts/bench.sh                 # 7 GiB disk (a 4.5 GB archive), 5 runs
#   SIZE=2G RUNS=3 scripts/bench.sh
#   BENCH_DIR=/var/tmp/x scripts/bench.sh
#
# Every timed command starts with its input in the page cache (read once
# before), after `sync`, and writes a new output file that is removed
# afterwards, so cp and vmasync pay the same page-cache and writeback cost.
# Each command runs once untimed (warm-up), then RUNS timed runs; figures
# are medians. Needs: go, zstd, /usr/bin/time (apt-get install time).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${SIZE:-7G}
RUNS=${RUNS:-5}
BENCH_DIR=${BENCH_DIR:-/var/tmp/vmasync-bench}
mkdir -p "$BENCH_DIR"
W=$(mktemp -d "$BENCH_DIR/run.XXXXXX")
trap 'rm -rf "$W"' EXIT

command -v zstd >/dev/null || { echo "bench.sh: needs zstd (apt-get install zstd)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

go build -o "$W/vmasync" ./cmd/vmasync
go build -o "$W/vmagen" ./internal/cmd/vmagen
V=$W/vmasync

DISKS="drive-scsi0:$SIZE:mixed,drive-efidisk0:540672,drive-tpmstate0-backup:4M"
SRC=$BENCH_DIR/proxmox-$SIZE.vma
if [ ! -s "$SRC" ]; then
	echo "generating $SRC ($DISKS, Proxmox-like order)" >&2
	"$W/vmagen" -disks "$DISKS" -order proxmox -seed 1 -o "$SRC.tmp" && mv "$SRC.tmp" "$SRC"
fi
if [ ! -s "$SRC.zst" ]; then
	zstd -q -T1 -f "$SRC" -o "$SRC.zst.tmp" && mv "$SRC.zst.tmp" "$SRC.zst"
fi
BYTES=$(stat -c %s "$SRC")

# t NAME CMD...: run CMD RUNS times, record median seconds and max RSS.
declare -A SEC RSS
t() {
	local name=$1
	shift
	local times=() rss=0 i
	for i in $(seq 0 "$RUNS"); do
		cat "$SRC" "$SRC.zst" >/dev/null
		rm -rf "$W/out" "$W/unpacked"
		sync
		/usr/bin/time -o "$W/time" -f "%e %M" "$@" >/dev/null
		read -r s m <"$W/time"
		[ "$i" = 0 ] && continue # warm-up
		times+=("$s")
		((m > rss)) && rss=$m
	done
	rm -rf "$W/out" "$W/unpacked"
	SEC[$name]=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
	RSS[$name]=$rss
	echo "$name: ${times[*]} s (median ${SEC[$name]}), peak RSS ${rss} KiB" >&2
}

t cp cp "$SRC" "$W/out"
t optimize "$V" optimize --force "$SRC" "$W/out"
t cat sh -c "cat '$SRC' >/dev/null"
t verify "$V" verify "$SRC"
t unpack "$V" unpack "$SRC" "$W/unpacked"
t zstd-dc sh -c "zstd -dc '$SRC.zst' > '$W/out'"
t optimize-zst-stdin sh -c "'$V' optimize --force - '$W/out' < '$SRC.zst'"

ratio() { awk -v a="${SEC[$1]}" -v b="${SEC[$2]}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
mbs() { awk -v s="${SEC[$1]}" -v n="$BYTES" 'BEGIN {printf "%.0f", (s > 0 ? n / s / 1e6 : 0)}'; }

echo
echo "Archive: $SRC ($BYTES bytes, $DISKS, Proxmox-like order); $RUNS runs, median; $(nproc) cores; $(date -u +%Y-%m-%d)"
echo
echo "| command | median s | MB/s of archive | vs baseline | peak RSS KiB |"
echo "| --- | --- | --- | --- | --- |"
echo "| cp FILE out | ${SEC[cp]} | $(mbs cp) | baseline | ${RSS[cp]} |"
echo "| vmasync optimize FILE out | ${SEC[optimize]} | $(mbs optimize) | $(ratio optimize cp)× cp | ${RSS[optimize]} |"
echo "| cat FILE >/dev/null | ${SEC[cat]} | $(mbs cat) | baseline | ${RSS[cat]} |"
echo "| vmasync verify FILE | ${SEC[verify]} | $(mbs verify) | $(ratio verify cat)× cat | ${RSS[verify]} |"
echo "| vmasync unpack FILE DIR | ${SEC[unpack]} | $(mbs unpack) | $(ratio unpack cp)× cp | ${RSS[unpack]} |"
echo "| zstd -dc FILE.zst > out | ${SEC[zstd-dc]} | $(mbs zstd-dc) | baseline | ${RSS[zstd-dc]} |"
echo "| vmasync optimize - out < FILE.zst | ${SEC[optimize-zst-stdin]} | $(mbs optimize-zst-stdin) | $(ratio optimize-zst-stdin zstd-dc)× zstd -dc | ${RSS[optimize-zst-stdin]} |"
