#!/usr/bin/env bash
# bench-metadata.sh: what a night stores besides the new chunks (issue 15,
# item 2), for one generated VM pushed three nights with the real binary
# into a local remote: day 1, day 2 with CHANGE of its clusters changed
# (default 0.1 %), day 3 identical to day 2 (the same dump under the next
# night's name). Metadata is push's metadata_bytes: pack headers, chunk
# tree nodes, index objects, the root object (uploaded_bytes minus the new
# chunks' compressed bytes); the lock objects a push writes and removes
# (two of about 300 bytes) are not in it. With OLD=<commit>, the same
# three nights are pushed by that commit's vmasync (format 2) beside.
#
#   scripts/bench-metadata.sh                      # a 16 GiB VM, mixed content
#   SIZE=4G OLD=5e3c28d scripts/bench-metadata.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-16G}
CHANGE=${CHANGE:-0.001}
CONTENT=${CONTENT:-mixed}
BENCH_DIR=${BENCH_DIR:-/var/tmp/vmasync-bench}
export PATH=$PATH:/usr/local/go/bin
mkdir -p "$BENCH_DIR"
W=$(mktemp -d "$BENCH_DIR/meta.XXXXXX")
trap 'rm -rf "$W"; [ -z "${OLD:-}" ] || git worktree remove --force "$W.old" 2>/dev/null || true' EXIT
go build -o "$W/vmasync" ./cmd/vmasync
go build -o "$W/vmagen" ./internal/cmd/vmagen
bins=("new:$W/vmasync")
if [ -n "${OLD:-}" ]; then
	git worktree add -q "$W.old" "$OLD"
	(cd "$W.old" && go build -o "$W/vmasync-old" ./cmd/vmasync)
	bins+=("old:$W/vmasync-old")
fi
mkdir -p "$W/d1" "$W/d2" "$W/d3"
gen() { "$W/vmagen" -disks "drive-scsi0:$SIZE:$CONTENT,drive-efidisk0:540672" -order proxmox -seed 21 -change "$CHANGE" -gen "$1" -o "$2"; }
gen 0 "$W/d1/vzdump-qemu-100-2026_11_20-01_00_00.vma"
gen 1 "$W/d2/vzdump-qemu-100-2026_11_21-01_00_00.vma"
ln "$W/d2/vzdump-qemu-100-2026_11_21-01_00_00.vma" "$W/d3/vzdump-qemu-100-2026_11_22-01_00_00.vma"

echo "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); vmasync $(git rev-parse --short HEAD); VM: $SIZE $CONTENT, day 2 with $CHANGE of the clusters changed"
echo
echo "| vmasync | night | archive bytes | new chunk bytes (compressed) | metadata bytes | metadata / new compressed | uploaded bytes |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for b in "${bins[@]}"; do
	label=${b%%:*} bin=${b#*:}
	for n in 1 2 3; do
		"$bin" push --json "$W/d$n" "$W/remote-$label" >"$W/out.json"
		python3 - "$label" "$n" "$W/out.json" <<'PY'
import json, sys
label, night, path = sys.argv[1:]
d = json.load(open(path))["dumps"][0]
meta = d.get("metadata_bytes")
if meta is None:  # before metadata_bytes: everything uploaded but the new chunks' blobs
    meta = d["uploaded_bytes"] - d["stored_bytes"]
ratio = "%.1f %%" % (100.0 * meta / d["stored_bytes"]) if d["stored_bytes"] else "n/a"
print("| %s | day %s | %d | %d | %d | %s | %d |" % (label, night, d["archive_bytes"], d["stored_bytes"], meta, ratio, d["uploaded_bytes"]))
PY
	done
	echo "| $label | repository after 3 nights | $(du -sb "$W/remote-$label" | cut -f1) bytes | | | | |"
	rm -rf "$W/remote-$label"
done
