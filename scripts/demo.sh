#!/usr/bin/env bash
# demo.sh: build vmasync and run its main job: two nights of vzdump backups
# pushed, deduplicated, to a local directory used as the rclone remote
# (DEMO_REMOTE=name:path picks any rclone remote instead), pulled back and
# checked. Then the VMA toolbox on the real Proxmox sample
# (vma/testdata/real/dissect-test.vma.gz) when it is there, else on a
# generated archive. Exits 0 when everything behaved as expected.
#
# Its data goes to DEMO_DIR (default /tmp/vmasync-demo, about 550 MB). The
# demo deletes that directory at its start only if an earlier run made it
# (the marker file .vmasync-demo); any other existing directory is refused.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

if [ -t 1 ]; then
	say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
	say() { printf '\n==> %s\n' "$*"; }
fi
run() { printf '$ %s\n' "$*"; "$@"; }

# --- where the data goes ---------------------------------------------------------
# Checked before anything else: an existing DEMO_DIR is deleted only if an
# earlier demo made it (its marker file).
demo=${DEMO_DIR:-/tmp/vmasync-demo}
marker=.vmasync-demo
if { [ -e "$demo" ] || [ -L "$demo" ]; } && { [ -L "$demo" ] || [ ! -d "$demo" ] || [ ! -f "$demo/$marker" ]; }; then
	echo "demo.sh: $demo exists and is not a directory an earlier demo made (no $marker file in it, or a symlink); refusing to delete it. Remove it yourself or set DEMO_DIR to another directory." >&2
	exit 1
fi

# --- Go -------------------------------------------------------------------
if [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
	cat >&2 <<'EOF'
demo.sh: Go is not installed (looked in /usr/local/go/bin and on PATH).
Install Go 1.26 or later, e.g. as root:
    curl -fsSLO https://go.dev/dl/go1.26.8.linux-amd64.tar.gz
    rm -rf /usr/local/go && tar -C /usr/local -xzf go1.26.8.linux-amd64.tar.gz
then run ./scripts/demo.sh again.
EOF
	exit 1
fi

# --- tools the demo uses ----------------------------------------------------
missing=()
command -v zstd >/dev/null 2>&1 || missing+=(zstd)
command -v rdiff >/dev/null 2>&1 || missing+=(rdiff)
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		say "installing ${missing[*]} (compressed input, delta sizes)"
		DEBIAN_FRONTEND=noninteractive apt-get update </dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" </dev/null
	else
		echo "demo.sh: ${missing[*]} missing and cannot be installed here (not root or no apt-get); skipping those steps"
	fi
fi

# --- build -------------------------------------------------------------------
# CGO_ENABLED=0: a static binary, as the guide installs it.
export CGO_ENABLED=0
say "building ./bin/vmasync ($(go version | cut -d' ' -f3))"
cat <<'END'
The first build compiles vmasync with rclone and all of its backends: about
2.5 minutes on 2 idle cores (measured: 2 min 17 s; 5.5 minutes on 2 busy
ones), plus the download of the Go modules on a machine that has none of them
yet. Later builds take seconds. The demo itself then takes under a minute.
END
run go build -o bin/vmasync ./cmd/vmasync
vmasync="$root/bin/vmasync"
run "$vmasync" --version

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmasync-demo.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# --- the main job: nightly push to a remote -----------------------------------
run go build -o bin/vmagen ./internal/cmd/vmagen
if [ -f "$demo/$marker" ]; then
	echo "removing the data of an earlier demo run in $demo"
	rm -rf "$demo"
fi
mkdir -p "$demo/dump"
echo "made by scripts/demo.sh of vmasync; 'rm -rf $demo' removes this demo's data" >"$demo/$marker"
remote=${DEMO_REMOTE:-$demo/remote}
say "night 1: vzdump writes a backup of VM 100 (3 disks, zstd) into $demo/dump"
disks=drive-scsi0:256M:mixed,drive-efidisk0:540672,drive-tpmstate0-backup:4M
night() { # night GENERATION STAMP
	printf '$ vmagen -gen %s ... | zstd > %s\n' "$1" "vzdump-qemu-100-$2.vma.zst"
	bin/vmagen -disks "$disks" -order proxmox -seed 7 -gen "$1" -change 0.01 -o - | zstd -q -o "$demo/dump/vzdump-qemu-100-$2.vma.zst"
	echo "INFO: backup of VM 100 finished" >"$demo/dump/vzdump-qemu-100-$2.log"
}
night 0 2026_11_20-01_00_00
say "push: the whole backup goes up (the remote is empty; it is initialised)"
run "$vmasync" push "$demo/dump" "$remote"
say "night 2: 1% of the clusters changed; push sends only the new chunks"
night 1 2026_11_21-01_00_00
run "$vmasync" push "$demo/dump" "$remote"
run "$vmasync" snapshots "$remote"
say "pull: rebuild night 2 from the remote, byte for byte what optimize makes"
mkdir -p "$demo/restore"
run "$vmasync" pull -v "$remote" 100@latest "$demo/restore"
run "$vmasync" verify "$demo/restore/vzdump-qemu-100-2026_11_21-01_00_00.vma"
printf '$ vmasync optimize %s - | cmp - %s\n' "vzdump-qemu-100-2026_11_21-01_00_00.vma.zst" "restore/vzdump-qemu-100-2026_11_21-01_00_00.vma"
"$vmasync" optimize "$demo/dump/vzdump-qemu-100-2026_11_21-01_00_00.vma.zst" - | cmp - "$demo/restore/vzdump-qemu-100-2026_11_21-01_00_00.vma"
echo "identical"
run "$vmasync" check --read-data "$remote"
run "$vmasync" prune --dry-run --keep-last 1 "$remote"
echo "(the remote stays in $remote; qmrestore would take the pulled file)"

# --- the sample ----------------------------------------------------------------
sample="$root/vma/testdata/real/dissect-test.vma.gz"
real=yes
if [ ! -f "$sample" ]; then
	real=no
	say "vma/testdata/real/ is not here: generating an archive instead of the real sample"
	sample="$tmp/generated.vma"
	if [ -f vma/vmatest/vmatest.go ] && [ -d internal/cmd/vmagen ] &&
		go run ./internal/cmd/vmagen -disks drive-scsi0:64M:mixed,drive-efidisk0:540672 -order proxmox -seed 1 -o "$sample"; then
		echo "generated $sample with internal/cmd/vmagen (Proxmox-like cluster order)"
	else
		mkdir -p "$tmp/gen"
		printf 'name: demo\nmemory: 1024\nscsi0: local-lvm:vm-100-disk-0,size=8M\n' >"$tmp/gen/qemu-server.conf"
		head -c $((8 << 20)) /dev/urandom >"$tmp/gen/disk-drive-scsi0.raw"
		"$vmasync" pack "$tmp/gen" "$sample"
		echo "generated $sample with vmasync pack"
	fi
fi

say "info: what the archive holds"
run "$vmasync" info "$sample"

say "verify --proxmox: the checks of Proxmox's 'vma verify' (no completeness check)"
run "$vmasync" verify --proxmox "$sample"

say "verify: the same plus the completeness check (exit code shown)"
set +e
"$vmasync" verify "$sample"
rc=$?
set -e
echo "exit code: $rc"
if [ "$real" = yes ]; then
	if [ "$rc" -ne 1 ]; then
		echo "demo.sh: expected verify to fail (exit 1) on the truncated real sample" >&2
		exit 1
	fi
	cat <<'EOF'
This failure is expected: the real sample is the first 538112 bytes of a
10 GiB vzdump backup, cut at an extent boundary. Every header and extent
checksum is fine, so Proxmox's 'vma verify' (and --proxmox) accepts it, but
cluster 23 of drive-scsi0 and everything after it are missing, so a restore
('vma extract', qmrestore) would fail. vmasync verify reports that.
EOF
elif [ "$rc" -ne 0 ]; then
	echo "demo.sh: verify of the generated archive failed" >&2
	exit 1
fi

# --- pack -> verify -> unpack round trip ------------------------------------
say "round trip: pack a directory, verify (plain and zstd), unpack, compare"
src="$tmp/src"
mkdir -p "$src"
printf 'boot: order=scsi0\ncores: 2\nmemory: 2048\nname: demo\nscsi0: local-lvm:vm-100-disk-0,size=3M\n' >"$src/qemu-server.conf"
# 3 MiB + 100 bytes: random data, then a zero run, then more data.
head -c $((1 << 20)) /dev/urandom >"$src/disk-drive-scsi0.raw"
head -c $((1 << 20)) /dev/zero >>"$src/disk-drive-scsi0.raw"
head -c $(((1 << 20) + 100)) /dev/urandom >>"$src/disk-drive-scsi0.raw"
# An EFI vars disk: 540672 bytes, mostly zero.
head -c 540672 /dev/zero >"$src/disk-drive-efidisk0.raw"
printf 'EFI PART' | dd of="$src/disk-drive-efidisk0.raw" bs=1 seek=512 conv=notrunc status=none
ls -l "$src"

archive="$tmp/vzdump-qemu-100-2026_01_01-00_00_00.vma"
run "$vmasync" pack -v "$src" "$archive"
run "$vmasync" verify "$archive"
if command -v zstd >/dev/null 2>&1; then
	run zstd -q "$archive" -o "$archive.zst"
	run "$vmasync" verify "$archive.zst"
	printf '$ zstd -dc %s | %s verify -\n' "$archive.zst" "$vmasync"
	zstd -dc "$archive.zst" | "$vmasync" verify -
	run "$vmasync" unpack -v "$archive.zst" "$tmp/restored"
else
	run "$vmasync" unpack -v "$archive" "$tmp/restored"
fi
for f in qemu-server.conf disk-drive-scsi0.raw disk-drive-efidisk0.raw; do
	run cmp "$src/$f" "$tmp/restored/$f"
done
echo "all files identical after pack -> unpack"

# --- why: optimize two nightly backups -------------------------------------------
say "optimize: two backups of the same VM, 0.1% of clusters changed between them"
for g in 0 1; do
	run bin/vmagen -disks "$disks" -order proxmox -seed 7 -gen $g -change 0.001 -o "$tmp/day$g.vma"
	run "$vmasync" optimize -v "$tmp/day$g.vma" "$tmp/day$g.opt.vma"
done
run "$vmasync" info "$tmp/day1.opt.vma"
if command -v rdiff >/dev/null 2>&1; then
	say "what a delta tool (rdiff) has to store for day 2 after day 1"
	for v in .vma .opt.vma; do
		rm -f "$tmp/sig" "$tmp/delta"
		rdiff signature "$tmp/day0$v" "$tmp/sig"
		rdiff delta "$tmp/sig" "$tmp/day1$v" "$tmp/delta"
		printf '%-28s day 2 is %10d bytes, delta against day 1: %10d bytes\n' \
			"$([ $v = .vma ] && echo 'as vzdump wrote them:' || echo 'after vmasync optimize:')" \
			"$(stat -c %s "$tmp/day1$v")" "$(stat -c %s "$tmp/delta")"
	done
fi

say "done: push, pull, check, info, verify, optimize and the pack/unpack round trip work"
cat <<END
The demo's data stays in $demo ($(du -sh "$demo" 2>/dev/null | cut -f1)): the two nightly dumps
(dump/), the pulled backup (restore/) and the remote (remote/, unless DEMO_REMOTE
named another). Look at them, then remove them with:
    rm -rf $demo
The binaries are in $root/bin (vmasync, vmagen).
END
