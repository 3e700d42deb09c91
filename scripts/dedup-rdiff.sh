#!/usr/bin/env bash
# dedup-rdiff.sh: rdiff (librsync) delta sizes beside restic's growth for
# generated day-1/day-2 pairs, in three forms: as vzdump wrote them
# (Proxmox-like order, random uuid per backup), ordered only (clusters in
# device order, the random uuid kept: vmagen -order ordered) and
# `vmasync optimize` output (device order and the fixed uuid). Day 2 = day 1
# with CHANGE of the clusters rewritten at scattered places. Prints a
# Markdown table row per CHANGE and form.
#
#   scripts/dedup-rdiff.sh                          # SIZE=1G, CHANGE="0.001 0.01 0.03"
#   SIZE=256M CHANGE=0.01 scripts/dedup-rdiff.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-1G}
CHANGE=${CHANGE:-0.001 0.01 0.03}
BENCH_DIR=${BENCH_DIR:-/var/tmp/vmasync-bench}
export PATH=$PATH:/usr/local/go/bin
for c in rdiff restic; do
	command -v $c >/dev/null || { echo "dedup-rdiff.sh: needs $c (apt-get install $c)" >&2; exit 1; }
done
mkdir -p "$BENCH_DIR"
W=$(mktemp -d "$BENCH_DIR/rdiff.XXXXXX")
trap 'rm -rf "$W"' EXIT
go build -o "$W/vmasync" ./cmd/vmasync
go build -o "$W/vmagen" ./internal/cmd/vmagen
DISKS="drive-scsi0:$SIZE:mixed,drive-efidisk0:540672,drive-tpmstate0-backup:4M"
export RESTIC_PASSWORD=vmasync-bench RESTIC_CACHE_DIR=$W/cache
added() { # added REPO FILE: restic's data_added for backing up FILE
	RESTIC_REPOSITORY=$1 restic backup --compression off --stdin --stdin-filename vzdump-qemu-100.vma --json <"$2" |
		grep '"message_type":"summary"' | sed 's/.*"data_added":\([0-9]*\).*/\1/'
}
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
pct() { awk -v a="$1" -v s="$2" 'BEGIN {printf "%.1f %%", 100 * a / s}'; }

echo "rdiff $(rdiff --version 2>&1 | head -1 | tr -d "()" | awk "{print \$NF}"), restic $(restic version | awk '{print $2}') --compression off; data disk $SIZE, seed 42" >&2
echo "| clusters changed | files | day-2 size MiB | rdiff delta MiB | rdiff delta / day-2 size | restic day-2 data added MiB | restic added / day-2 size |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for change in $CHANGE; do
	for g in 0 1; do
		"$W/vmagen" -disks "$DISKS" -order proxmox -seed 42 -gen $g -change "$change" -o "$W/day$g.original.vma"
		"$W/vmagen" -disks "$DISKS" -order ordered -seed 42 -gen $g -change "$change" -o "$W/day$g.ordered.vma"
		"$W/vmasync" optimize "$W/day$g.original.vma" "$W/day$g.optimized.vma"
	done
	for form in original ordered optimized; do
		rdiff signature "$W/day0.$form.vma" "$W/sig"
		rdiff delta "$W/sig" "$W/day1.$form.vma" "$W/delta"
		d=$(stat -c %s "$W/delta")
		size=$(stat -c %s "$W/day1.$form.vma")
		repo=$W/repo-$form
		RESTIC_REPOSITORY=$repo restic init --repository-version 2 >/dev/null
		added "$repo" "$W/day0.$form.vma" >/dev/null
		a2=$(added "$repo" "$W/day1.$form.vma")
		label=$form
		[ $form = original ] && label="as vzdump wrote them"
		[ $form = ordered ] && label="ordered only (random uuid)"
		echo "| $(awk -v c="$change" 'BEGIN {printf "%g %%", 100 * c}') | $label | $(mib "$size") | $(mib "$d") | $(pct "$d" "$size") | $(mib "$a2") | $(pct "$a2" "$size") |"
		rm -rf "$repo" "$W/sig" "$W/delta"
	done
	rm -f "$W"/day*.vma
done
