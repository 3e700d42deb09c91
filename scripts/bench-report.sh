#!/usr/bin/env bash
# bench-report.sh: speed and peak memory of `vmasync report A B` on two
# generated backups of one VM (day 2 = day 1 with CHANGE of the clusters
# changed, another uuid and Proxmox-like order). Both files are read once
# untimed (page cache), then report runs RUNS times under /usr/bin/time.
# Prints each run and the median MB/s of archive data (A + B bytes).
#
#   scripts/bench-report.sh                     # SIZE=3G data disk (1.9 GB archives), RUNS=5
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-3G}
CHANGE=${CHANGE:-0.01}
RUNS=${RUNS:-5}
BENCH_DIR=${BENCH_DIR:-/var/tmp/vmasync-bench}
export PATH=$PATH:/usr/local/go/bin
mkdir -p "$BENCH_DIR"
W=$(mktemp -d "$BENCH_DIR/report.XXXXXX")
trap 'rm -rf "$W"' EXIT
go build -o "$W/vmasync" ./cmd/vmasync
go build -o "$W/vmagen" ./internal/cmd/vmagen
DISKS="drive-scsi0:$SIZE:mixed,drive-efidisk0:540672,drive-tpmstate0-backup:4M"
for g in 0 1; do
	"$W/vmagen" -disks "$DISKS" -order proxmox -seed 42 -gen $g -change "$CHANGE" -o "$W/day$g.vma"
done
cat "$W/day0.vma" "$W/day1.vma" >/dev/null
bytes=$(($(stat -c %s "$W/day0.vma") + $(stat -c %s "$W/day1.vma")))
"$W/vmasync" report "$W/day0.vma" "$W/day1.vma" >/dev/null
echo "archives: $(stat -c %s "$W/day0.vma") + $(stat -c %s "$W/day1.vma") bytes; $(nproc) cores; $(date -u +%F)"
for i in $(seq "$RUNS"); do
	/usr/bin/time -f "%e %M %U %S" -o "$W/time" "$W/vmasync" report "$W/day0.vma" "$W/day1.vma" >/dev/null
	read -r s rss u sy <"$W/time"
	echo "run $i: $s s, $(awk -v b="$bytes" -v s="$s" 'BEGIN {printf "%.0f", b / s / 1e6}') MB/s, peak RSS $rss KiB, user $u s, sys $sy s" | tee -a "$W/runs"
done
echo "median: $(awk '{print $3}' "$W/runs" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') s"
