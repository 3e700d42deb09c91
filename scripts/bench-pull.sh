#!/usr/bin/env bash
# bench-pull.sh: speed and memory of `vmasync pull` from a local remote
# against `restic dump` of the same optimized archive (issue 15, item 4),
# side by side in one run. Generates a Proxmox-like dump (SIZE of mixed
# data disk, default 3G), pushes it with vmasync and backs up its
# optimized form with restic, then runs, RUNS times each, alternating:
#
#   vmasync pull REMOTE 100 - > /dev/null
#   restic dump latest vzdump-qemu-100.vma > /dev/null
#   OLD pull (VMASYNC_OLD=/path/to/another/vmasync, optional: before/after)
#
# and prints a Markdown table: median wall seconds, MB/s of VMA data,
# ratio to restic, peak RSS. Needs restic, zstd, python3, /usr/bin/time.
#
#   scripts/bench-pull.sh
#   SIZE=8G RUNS=5 VMASYNC_OLD=/tmp/vmasync-old scripts/bench-pull.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-3G}
RUNS=${RUNS:-3}
BENCH_DIR=${BENCH_DIR:-/var/tmp/vmasync-bench}
export PATH=$PATH:/usr/local/go/bin
for c in restic zstd python3 /usr/bin/time; do
	command -v "$c" >/dev/null || { echo "bench-pull.sh: needs $c" >&2; exit 1; }
done
mkdir -p "$BENCH_DIR"
W=$(mktemp -d "$BENCH_DIR/pull.XXXXXX")
trap 'rm -rf "$W"' EXIT
CGO_ENABLED=0 go build -o "$W/vmasync" ./cmd/vmasync
go build -o "$W/vmagen" ./internal/cmd/vmagen
V=$W/vmasync
D=vzdump-qemu-100-2026_11_20-01_00_00.vma
mkdir "$W/dumps"
"$W/vmagen" -disks "drive-scsi0:$SIZE:mixed,drive-efidisk0:540672,drive-tpmstate0-backup:4M" -order proxmox -seed 42 -o "$W/dumps/$D"
zstd -q -T0 --rm "$W/dumps/$D"
"$V" push -q "$W/dumps" "$W/remote"
export RESTIC_PASSWORD=vmasync-bench RESTIC_CACHE_DIR=$W/restic-cache
restic init -q --repo "$W/restic" --repository-version 2
zstd -dc "$W/dumps/$D.zst" | "$V" optimize - - | restic backup -q --repo "$W/restic" --stdin --stdin-filename vzdump-qemu-100.vma
bytes=$("$V" pull "$W/remote" 100 - | wc -c)

timed() {
	local name=$1
	shift
	sync
	/usr/bin/time -v -o "$W/time.txt" "$@" >/dev/null
	awk -v n="$name" '/Elapsed \(wall clock\)/ {t = $NF; k = split(t, p, ":"); s = 0; for (i = 1; i <= k; i++) s = s * 60 + p[i]}
		/Maximum resident set size/ {r = $NF} END {print n, s, r}' "$W/time.txt" >>"$W/times"
}
echo "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); restic $(restic version | awk '{print $2}'); vmasync $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- remote cmd || echo +changes); $bytes bytes of VMA data" >&2
for run in $(seq "$RUNS"); do
	timed pull "$V" pull -q "$W/remote" 100 -
	timed restic restic dump --repo "$W/restic" latest vzdump-qemu-100.vma
	if [ -n "${VMASYNC_OLD:-}" ]; then
		timed old "$VMASYNC_OLD" pull -q "$W/remote" 100 -
	fi
done
python3 - "$W/times" "$bytes" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    n, s, r = line.split()
    rows.setdefault(n, []).append((float(s), int(r)))
b = int(sys.argv[2])
med = {n: statistics.median(s for s, _ in v) for n, v in rows.items()}
labels = {"pull": "vmasync pull REMOTE 100 -", "restic": "restic dump latest FILE", "old": "vmasync pull (VMASYNC_OLD)"}
print("| command | median s | all runs s | MB/s | × restic dump | peak RSS MiB |")
print("| --- | --- | --- | --- | --- | --- |")
for n in ("pull", "old", "restic"):
    if n not in rows:
        continue
    v = rows[n]
    print(f"| {labels[n]} | {med[n]:.2f} | {' '.join(f'{s:.2f}' for s, _ in v)} | {b / 1e6 / med[n]:.0f} | {med['restic'] / med[n]:.2f} | {max(r for _, r in v) / 1024:.0f} |")
PY
