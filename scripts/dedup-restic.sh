#!/usr/bin/env bash
# dedup-restic.sh: what optimize buys with real restic. Two generated
# backups of the same VM (day 2 = day 1 with CHANGE of the clusters
# rewritten, scattered, another uuid and another Proxmox-like cluster
# order) are backed up into a fresh restic repository each way, as the
# original files and as `vmasync optimize` output, with compression off.
# Prints a Markdown table of the repository growth for day 2.
#
#   scripts/dedup-restic.sh                    # 1 GiB data disk, 3 % changed
#   SIZE=4G CHANGE=0.01 scripts/dedup-restic.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-1G}
CHANGE=${CHANGE:-0.03}
BENCH_DIR=${BENCH_DIR:-/var/tmp/vmasync-bench}
mkdir -p "$BENCH_DIR"
W=$(mktemp -d "$BENCH_DIR/restic.XXXXXX")
trap 'rm -rf "$W"' EXIT
command -v restic >/dev/null || { echo "dedup-restic.sh: needs restic (apt-get install restic)" >&2; exit 1; }

go build -o "$W/vmasync" ./cmd/vmasync
go build -o "$W/vmagen" ./internal/cmd/vmagen
V=$W/vmasync
DISKS="drive-scsi0:$SIZE:mixed,drive-efidisk0:540672,drive-tpmstate0-backup:4M"
for g in 0 1; do
	"$W/vmagen" -disks "$DISKS" -order proxmox -seed 42 -gen $g -change "$CHANGE" -o "$W/day$g.vma"
	"$V" optimize "$W/day$g.vma" "$W/day$g.opt.vma"
done

export RESTIC_PASSWORD=vmasync-bench RESTIC_CACHE_DIR=$W/cache
added() { # added REPO FILE: restic's data_added for backing up FILE
	RESTIC_REPOSITORY=$1 restic backup --compression off --stdin --stdin-filename vzdump-qemu-100.vma --json <"$2" |
		grep '"message_type":"summary"' | sed 's/.*"data_added":\([0-9]*\).*/\1/'
}
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }

echo "restic $(restic version | awk '{print $2}'), --compression off; day 2 = day 1 with $CHANGE of clusters changed; data disk $SIZE" >&2
echo "| files | day-1 size MiB | day-1 data added MiB | day-2 data added MiB | day-2 repo growth MiB | day-2 added / day-2 size |"
echo "| --- | --- | --- | --- | --- | --- |"
for variant in original optimized; do
	suffix=.vma
	[ $variant = optimized ] && suffix=.opt.vma
	repo=$W/repo-$variant
	RESTIC_REPOSITORY=$repo restic init --repository-version 2 >/dev/null
	a1=$(added "$repo" "$W/day0$suffix")
	before=$(du -sb "$repo" | cut -f1)
	a2=$(added "$repo" "$W/day1$suffix")
	after=$(du -sb "$repo" | cut -f1)
	size1=$(stat -c %s "$W/day0$suffix")
	size2=$(stat -c %s "$W/day1$suffix")
	echo "| $variant | $(mib "$size1") | $(mib "$a1") | $(mib "$a2") | $(mib $((after - before))) | $(awk -v a="$a2" -v s="$size2" 'BEGIN {printf "%.1f %%", 100 * a / s}') |"
done
