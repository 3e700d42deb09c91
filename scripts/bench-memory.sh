#!/usr/bin/env bash
# bench-memory.sh: peak RSS of verify, unpack and optimize as the device
# grows, on mostly-zero archives (a device of 2 GiB, 20 GiB and 1 TiB is a
# small archive, so this runs in minutes). Memory must not grow with the
# device size beyond the 2 bits per cluster of the completeness bitmaps.
#
#   scripts/bench-memory.sh            # 2G 20G 1T
#   SIZES="2G 20G" scripts/bench-memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-2G 20G 1T}
BENCH_DIR=${BENCH_DIR:-/var/tmp/vmasync-bench}
mkdir -p "$BENCH_DIR"
W=$(mktemp -d "$BENCH_DIR/mem.XXXXXX")
trap 'rm -rf "$W"' EXIT
[ -x /usr/bin/time ] || { echo "bench-memory.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
go build -o "$W/vmasync" ./cmd/vmasync
go build -o "$W/vmagen" ./internal/cmd/vmagen
V=$W/vmasync

rss() { # rss CMD...: peak RSS in MiB
	/usr/bin/time -o "$W/time" -f "%M" "$@" >/dev/null
	awk '{printf "%.0f", $1 / 1024}' "$W/time"
}

echo "| device size | clusters | archive bytes | verify MiB | unpack MiB | optimize file MiB | optimize stdin MiB |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for s in $SIZES; do
	a=$W/sparse-$s.vma
	"$W/vmagen" -disks "drive-scsi0:$s:sparse,drive-efidisk0:540672" -order proxmox -seed 2 -o "$a"
	clusters=$("$V" info --json "$a" | sed -n 's/.*"clusters": *\([0-9]*\).*/\1/p' | head -1)
	v=$(rss "$V" verify "$a")
	u=$(rss "$V" unpack "$a" "$W/u")
	rm -rf "$W/u"
	o=$(rss "$V" optimize --force "$a" "$W/o.vma")
	rm -f "$W/o.vma"
	p=$(rss sh -c "'$V' optimize - '$W/o.vma' < '$a'")
	rm -f "$W/o.vma"
	echo "| $s | $clusters | $(stat -c %s "$a") | $v | $u | $o | $p |"
	rm -f "$a"
done
