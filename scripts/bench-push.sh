#!/usr/bin/env bash
# bench-push.sh: speed and memory of `vmasync push` to a local remote
# against restic fed by the same optimize stream (issue 5). Generates a
# day-1 and a day-2 backup of one VM (day 2 = day 1 with CHANGE of the
# clusters rewritten at scattered places, another uuid and Proxmox-like
# order), compresses both with zstd as vzdump does, then RUNS times, the
# two tools interleaved (which goes first alternates):
#   vmasync push DUMPS REMOTE                 day 1 into a fresh remote, then day 2
#   zstd -dc DUMP | vmasync optimize - - | restic backup --stdin
#                                             day 1 into a fresh repository, then day 2
# and prints a Markdown table of medians: MB/s of decompressed VMA data
# (10^6 bytes per second of wall time), the ratio push / restic pipeline,
# and peak RSS (/usr/bin/time -v; for the pipeline, its largest process).
# Inputs are in the page cache; `sync` runs before every timed command.
# Everything is deleted at the end.
#
#   scripts/bench-push.sh                      # SIZE=4G data disk, RUNS=3, CHANGE=0.01
#   SIZE=1G RUNS=5 scripts/bench-push.sh
#   VMASYNC=/path/to/other/vmasync scripts/bench-push.sh   # benchmark another build
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-4G}
RUNS=${RUNS:-3}
CHANGE=${CHANGE:-0.01}
BENCH_DIR=${BENCH_DIR:-/var/tmp/vmasync-bench}
export PATH=$PATH:/usr/local/go/bin
for c in restic zstd python3 /usr/bin/time; do
	command -v "$c" >/dev/null || { echo "bench-push.sh: needs $c" >&2; exit 1; }
done
mkdir -p "$BENCH_DIR"
W=$(mktemp -d "$BENCH_DIR/push.XXXXXX")
trap 'rm -rf "$W"' EXIT

if [ -n "${VMASYNC:-}" ]; then
	cp "$VMASYNC" "$W/vmasync"
else
	go build -o "$W/vmasync" ./cmd/vmasync
fi
go build -o "$W/vmagen" ./internal/cmd/vmagen
V=$W/vmasync
DISKS="drive-scsi0:$SIZE:mixed,drive-efidisk0:540672,drive-tpmstate0-backup:4M"
D1=vzdump-qemu-100-2026_11_20-01_00_00.vma
D2=vzdump-qemu-100-2026_11_21-01_00_00.vma
mkdir "$W/in"
for g in 0 1; do
	d=$D1
	[ $g = 1 ] && d=$D2
	"$W/vmagen" -disks "$DISKS" -order proxmox -seed 42 -gen $g -change "$CHANGE" -o "$W/in/$d"
	zstd -q -T0 --rm "$W/in/$d"
done
# Bytes of VMA data per day (decompressed), the unit of MB/s.
vma1=$(zstd -dc "$W/in/$D1.zst" | wc -c)
vma2=$(zstd -dc "$W/in/$D2.zst" | wc -c)
cat "$W/in/"*.zst >/dev/null # into the page cache

export RESTIC_PASSWORD=vmasync-bench RESTIC_CACHE_DIR=$W/restic-cache
# timed NAME CMD...: runs CMD under /usr/bin/time -v, appends "NAME seconds maxrss_kib" to $W/times.
timed() {
	local name=$1
	shift
	sync
	/usr/bin/time -v -o "$W/time.txt" "$@" >"$W/out.txt"
	awk -v n="$name" '/Elapsed \(wall clock\)/ {t = $NF; k = split(t, p, ":"); s = 0; for (i = 1; i <= k; i++) s = s * 60 + p[i]}
		/Maximum resident set size/ {r = $NF} END {print n, s, r}' "$W/time.txt" >>"$W/times"
}
push_runs() {
	rm -rf "$W/remote" "$W/dumps"
	mkdir "$W/dumps"
	ln "$W/in/$D1.zst" "$W/dumps/$D1.zst"
	timed push-day1 "$V" push --json "$W/dumps" "$W/remote"
	ln "$W/in/$D2.zst" "$W/dumps/$D2.zst"
	timed push-day2 "$V" push --json "$W/dumps" "$W/remote"
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); r=[x for x in d["dumps"] if x["status"]=="pushed"][0]; print("push day 2: new_bytes", r["new_bytes"], "uploaded_bytes", r["uploaded_bytes"], "archive_bytes", r["archive_bytes"], file=sys.stderr)' "$W/out.txt"
	rm -rf "$W/remote" "$W/dumps"
}
restic_runs() {
	rm -rf "$W/restic"
	restic init --repo "$W/restic" --repository-version 2 >/dev/null
	for day in 1 2; do
		d=$D1
		[ $day = 2 ] && d=$D2
		# shellcheck disable=SC2016 # $1.. expand in the inner shell
		timed "restic-day$day" bash -c 'set -o pipefail; zstd -dc "$1" | "$2" optimize - - | restic backup -q --repo "$3" --stdin --stdin-filename vzdump-qemu-100.vma' _ "$W/in/$d.zst" "$V" "$W/restic"
	done
	rm -rf "$W/restic" "$W/restic-cache"
}

echo "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); restic $(restic version | awk '{print $2}'); vmasync ${VMASYNC:-$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- remote cmd vma chunkplan || echo +changes)}" >&2
# Untimed warm-up of both (page cache, binaries), then the timed runs.
push_runs 2>/dev/null
restic_runs
: >"$W/times"
for run in $(seq "$RUNS"); do
	if [ $((run % 2)) = 1 ]; then push_runs; restic_runs; else restic_runs; push_runs; fi
done

python3 - "$W/times" "$vma1" "$vma2" "$RUNS" "$SIZE" "$CHANGE" "$(stat -c %s "$W/in/$D1.zst")" <<'EOF'
import statistics, sys
times, vma1, vma2, runs, size, change, zst1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], int(sys.argv[7])
t = {}
for line in open(times):
    n, s, r = line.split()
    t.setdefault(n, []).append((float(s), int(r)))
print(f"data disk {size} mixed + EFI + TPM; day-1 VMA {vma1} bytes ({zst1} as .vma.zst), day-2 VMA {vma2} bytes, {float(change)*100:g} % of clusters changed; {runs} runs, median")
print()
print("| day | command | median s | all runs s | MB/s of VMA data | push / restic pipeline | peak RSS MiB (max of runs) |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for day, size in ((1, vma1), (2, vma2)):
    med = {}
    for tool in ("push", "restic"):
        xs = t[f"{tool}-day{day}"]
        med[tool] = statistics.median(s for s, _ in xs)
    for tool, label in (("push", "vmasync push DUMPS REMOTE"), ("restic", "zstd -dc \\| vmasync optimize - - \\| restic backup --stdin")):
        xs = t[f"{tool}-day{day}"]
        ratio = f"{med['restic'] / med['push']:.2f}× faster" if tool == "push" else "baseline"
        print(f"| {day} | {label} | {med[tool]:.2f} | {' '.join(f'{s:.2f}' for s, _ in xs)} | {size / med[tool] / 1e6:.0f} | {ratio} | {max(r for _, r in xs) / 1024:.0f} |")
EOF
