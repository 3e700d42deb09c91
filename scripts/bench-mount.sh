#!/usr/bin/env bash
# bench-mount.sh: restoring one disk without pulling the whole VM
# (issue 18). Generates a Proxmox-like dump (a SIZE disk of mixed data,
# default 2G, plus an EFI and a TPM disk), pushes it to a local remote
# (and, with SFTP=1, to an SFTP remote: a throw-away sshd on 127.0.0.1),
# then measures, on each remote:
#
#   vmasync pull -q REMOTE 100 - > /dev/null          the whole backup
#   vmasync pull -q --disk drive-scsi0 REMOTE 100 F   one disk, sparse file
#   vmasync mount --cache-size CACHE REMOTE MNT        then, on a fresh mount:
#     time to first byte: open + pread 4 KiB at offset 0, and at the middle
#     sequential read: dd if=MNT/100/STAMP/disk-drive-scsi0.raw bs=1M
#
# and prints a Markdown table: wall seconds, MB/s of disk bytes, peak RSS
# (the mount's VmHWM after the sequential read). Needs root (FUSE),
# python3 and /usr/bin/time; SFTP=1 needs sshd and ssh-keygen.
#
#   scripts/bench-mount.sh
#   SIZE=8G CACHE=256M SFTP=1 scripts/bench-mount.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-2G}
CACHE=${CACHE:-256M}
BENCH_DIR=${BENCH_DIR:-/var/tmp/vmasync-bench}
export PATH=$PATH:/usr/local/go/bin
for c in python3 /usr/bin/time; do
	command -v "$c" >/dev/null || { echo "bench-mount.sh: needs $c" >&2; exit 1; }
done
[ -e /dev/fuse ] || { echo "bench-mount.sh: /dev/fuse is missing (modprobe fuse)" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
W=$(mktemp -d "$BENCH_DIR/mount.XXXXXX")
SSHD_PID=
cleanup() {
	mountpoint -q "$W/mnt" 2>/dev/null && umount "$W/mnt"
	[ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
CGO_ENABLED=0 go build -o "$W/vmasync" ./cmd/vmasync
go build -o "$W/vmagen" ./internal/cmd/vmagen
V=$W/vmasync
STAMP=2026_11_20-01_00_00
D=vzdump-qemu-100-$STAMP.vma
mkdir "$W/dumps" "$W/mnt"
"$W/vmagen" -disks "drive-scsi0:$SIZE:mixed,drive-efidisk0:540672,drive-tpmstate0-backup:4M" -order proxmox -seed 42 -o "$W/dumps/$D"

remotes=("local $W/remote")
if [ "${SFTP:-0}" = 1 ]; then
	mkdir "$W/ssh" "$W/sftp"
	ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/host"
	ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/user"
	cp "$W/ssh/user.pub" "$W/ssh/authorized_keys"
	PORT=$((20000 + RANDOM % 20000))
	cat >"$W/ssh/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $W/ssh/host
AuthorizedKeysFile $W/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
StrictModes no
Subsystem sftp internal-sftp
PidFile $W/ssh/pid
EOF
	mkdir -p /run/sshd
	/usr/sbin/sshd -D -f "$W/ssh/sshd_config" &
	SSHD_PID=$!
	sleep 1
	echo "127.0.0.1 $(cut -d' ' -f1-2 "$W/ssh/host.pub")" | sed "s/^127.0.0.1/[127.0.0.1]:$PORT/" >"$W/ssh/known_hosts"
	remotes+=("sftp :sftp,host=127.0.0.1,port=$PORT,user=$(id -un),key_file=$W/ssh/user,known_hosts_file=$W/ssh/known_hosts:$W/sftp/repo")
fi

timed() { # name command...: appends "name seconds rss_kib" to $W/times
	local name=$1
	shift
	sync
	/usr/bin/time -f '%e %M' -o "$W/time.txt" "$@" >/dev/null
	echo "$name $(cat "$W/time.txt")" >>"$W/times"
}
disk_bytes=$(python3 -c "import sys; s=sys.argv[1]; m={'K':1<<10,'M':1<<20,'G':1<<30,'T':1<<40}; print(int(s[:-1])*m[s[-1]] if s[-1] in m else int(s))" "$SIZE")
echo "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); vmasync $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- cmd internal || echo +changes); drive-scsi0 $SIZE ($disk_bytes bytes), cache $CACHE" >&2
: >"$W/times"
for spec in "${remotes[@]}"; do
	kind=${spec%% *}
	R=${spec#* }
	"$V" push -q "$W/dumps" "$R"
	archive=$("$V" pull -q "$R" 100 - | wc -c)
	echo "$kind: archive $archive bytes" >&2
	timed "$kind-pull" "$V" pull -q "$R" 100 -
	rm -f "$W/disk.raw"
	timed "$kind-pulldisk" "$V" pull -q --disk drive-scsi0 "$R" 100 "$W/disk.raw"
	rm -f "$W/disk.raw"

	start=$(date +%s.%N)
	"$V" mount -q --cache-size "$CACHE" "$R" "$W/mnt" &
	MPID=$!
	F=$W/mnt/100/$STAMP/disk-drive-scsi0.raw
	until mountpoint -q "$W/mnt"; do sleep 0.01; done
	ready=$(python3 -c "import sys,time; print(f'{time.time()-float(sys.argv[1]):.3f}')" "$start")
	python3 - "$F" "$disk_bytes" "$kind" "$ready" >>"$W/ttfb" <<'PY'
import os, sys, time
f, size, kind, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
t = time.perf_counter()
fd = os.open(f, os.O_RDONLY)
os.pread(fd, 4096, 0)
first = time.perf_counter() - t
t = time.perf_counter()
os.pread(fd, 4096, size // 2 // 4096 * 4096)
mid = time.perf_counter() - t
os.close(fd)
print(kind, ready, f"{first:.3f}", f"{mid:.3f}")
PY
	# A fresh mount for the sequential read: nothing cached.
	kill -INT $MPID
	wait $MPID || true
	"$V" mount -q --cache-size "$CACHE" "$R" "$W/mnt" &
	MPID=$!
	until mountpoint -q "$W/mnt"; do sleep 0.01; done
	t0=$(date +%s.%N)
	dd if="$F" of=/dev/null bs=1M status=none
	t1=$(date +%s.%N)
	rss=$(awk '/VmHWM/ {print $2}' /proc/$MPID/status)
	echo "$kind-mount $(python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.2f}')" "$t0" "$t1") $rss" >>"$W/times"
	kill -INT $MPID
	wait $MPID || true
done
python3 - "$W/times" "$W/ttfb" "$disk_bytes" <<'PY'
import sys
times = {}
for line in open(sys.argv[1]):
    n, s, r = line.split()
    times[n] = (float(s), int(r))
ttfb = {l.split()[0]: l.split()[1:] for l in open(sys.argv[2])}
disk = int(sys.argv[3])
print("| remote | what | wall s | disk MB/s | peak RSS MiB |")
print("| --- | --- | --- | --- | --- |")
for kind in ttfb:
    for key, label in (("pull", "`pull REMOTE 100 -` (whole backup)"), ("pulldisk", "`pull --disk drive-scsi0 REMOTE 100 F`"), ("mount", "mount, `dd bs=1M` of disk-drive-scsi0.raw")):
        s, r = times[f"{kind}-{key}"]
        print(f"| {kind} | {label} | {s:.2f} | {disk / 1e6 / s:.0f} | {r / 1024:.0f} |")
print()
print("| remote | mount ready s | first 4 KiB at offset 0, s | first 4 KiB at the middle, s |")
print("| --- | --- | --- | --- |")
for kind, (ready, first, mid) in ttfb.items():
    print(f"| {kind} | {ready} | {first} | {mid} |")
PY
