#!/usr/bin/env bash
# dedup-push-restic.sh: what a day-2 `vmasync push` stores against the
# physical floor and against real restic (issue 5). For each change
# fraction, two generated backups of one VM (day 2 = day 1 with CHANGE of
# the 64 KiB clusters rewritten at scattered places, another uuid and
# another Proxmox-like cluster order) are
#   - compared by `vmasync report --json` (the physical floor: bytes of the
#     clusters whose content changed),
#   - pushed, day 1 then day 2, to a fresh local vmasync repository
#     (`vmasync push --json`: new_bytes before compression, uploaded_bytes
#     after compression: packs, index, manifest),
#   - optimized and backed up, day 1 then day 2, with restic into a fresh
#     repository (format 2, restic's default compression), day 2's cost
#     being the repository's growth (`du -sb` before and after).
# Prints a Markdown table.
#
#   scripts/dedup-push-restic.sh                           # SIZE=1G, CHANGE="0.001 0.01 0.03"
#   SIZE=256M CHANGE=0.01 scripts/dedup-push-restic.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-1G}
CHANGE=${CHANGE:-0.001 0.01 0.03}
BENCH_DIR=${BENCH_DIR:-/var/tmp/vmasync-bench}
export PATH=$PATH:/usr/local/go/bin
command -v restic >/dev/null || { echo "dedup-push-restic.sh: needs restic (apt-get install restic)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "dedup-push-restic.sh: needs python3" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
W=$(mktemp -d "$BENCH_DIR/dedup-push.XXXXXX")
trap 'rm -rf "$W"' EXIT

go build -o "$W/vmasync" ./cmd/vmasync
go build -o "$W/vmagen" ./internal/cmd/vmagen
V=$W/vmasync
DISKS="drive-scsi0:$SIZE:mixed,drive-efidisk0:540672,drive-tpmstate0-backup:4M"
D1=vzdump-qemu-100-2026_11_20-01_00_00.vma
D2=vzdump-qemu-100-2026_11_21-01_00_00.vma
mkdir "$W/in"
"$W/vmagen" -disks "$DISKS" -order proxmox -seed 42 -gen 0 -o "$W/in/$D1"
"$V" optimize "$W/in/$D1" "$W/day1.opt.vma"

export RESTIC_PASSWORD=vmasync-bench RESTIC_CACHE_DIR=$W/restic-cache
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }
mib() { awk -v b="$1" 'BEGIN {printf "%.2f", b / 1048576}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f×", a / b}'; }

echo "restic $(restic version | awk '{print $2}') (repository format 2, default compression); vmasync $(git rev-parse --short HEAD); data disk $SIZE mixed + EFI + TPM, seed 42" >&2
echo "| clusters changed | day-2 archive MiB | floor MiB | push new MiB | new / floor | push uploaded MiB | restic repo growth MiB | uploaded / restic |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for c in $CHANGE; do
	rm -f "$W/in/$D2"
	"$W/vmagen" -disks "$DISKS" -order proxmox -seed 42 -gen 1 -change "$c" -o "$W/in/$D2"
	floor=$("$V" report --json "$W/in/$D1" "$W/in/$D2" | json 'd["floor"]["changed_bytes"]')

	# vmasync: day 1, then day 2, into a fresh local repository.
	rm -rf "$W/remote" "$W/dumps"
	mkdir "$W/dumps"
	ln "$W/in/$D1" "$W/dumps/$D1"
	"$V" push --json "$W/dumps" "$W/remote" >/dev/null
	ln "$W/in/$D2" "$W/dumps/$D2"
	out=$("$V" push --json "$W/dumps" "$W/remote")
	read -r arch new up < <(echo "$out" | json '" ".join(str(r[k]) for r in d["dumps"] if r["status"] == "pushed" for k in ("archive_bytes", "new_bytes", "uploaded_bytes"))')

	# restic: the same optimized pair.
	"$V" optimize "$W/in/$D2" "$W/day2.opt.vma"
	rm -rf "$W/restic"
	restic init --repo "$W/restic" --repository-version 2 >/dev/null
	restic backup --repo "$W/restic" --stdin --stdin-filename vzdump-qemu-100.vma <"$W/day1.opt.vma" >/dev/null
	before=$(du -sb "$W/restic" | cut -f1)
	restic backup --repo "$W/restic" --stdin --stdin-filename vzdump-qemu-100.vma <"$W/day2.opt.vma" >/dev/null
	after=$(du -sb "$W/restic" | cut -f1)
	growth=$((after - before))
	rm -f "$W/day2.opt.vma"

	echo "| $(awk -v c="$c" 'BEGIN {printf "%g %%", 100 * c}') | $(mib "$arch") | $(mib "$floor") | $(mib "$new") | $(ratio "$new" "$floor") | $(mib "$up") | $(mib "$growth") | $(awk -v a="$up" -v b="$growth" 'BEGIN {printf "%.3f", a / b}') |"
done
