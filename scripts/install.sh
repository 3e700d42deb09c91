#!/bin/sh
# install.sh: install vmasync on a Proxmox VE host (as root):
#   /usr/local/bin/vmasync                       the binary
#   /usr/local/lib/vmasync/vzdump-hook           the vzdump hook script
#   /usr/local/lib/vmasync/vmasync-nightly       push + prune runner
#   /etc/systemd/system/vmasync-push.service     runs vmasync-nightly
#   /etc/systemd/system/vmasync-push.timer       nightly
#   /etc/vmasync.conf                            settings (only if missing)
#   /var/lib/vmasync/queue                       the hook's queue
# It enables nothing: the last lines say what to do next.
#
# The binary: VMASYNC_BIN=/path/to/vmasync, else ./bin/vmasync of this
# checkout, else it is built with Go (CGO_ENABLED=0 go build -o bin/vmasync
# ./cmd/vmasync: a static binary).
# DESTDIR=/some/dir installs below that directory instead of / (for
# packaging and tests; systemctl is then not called).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
DESTDIR=${DESTDIR:-}

if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
	echo "install.sh: run as root (or set DESTDIR)" >&2
	exit 1
fi

bin=${VMASYNC_BIN:-}
if [ -z "$bin" ]; then
	bin=$repo/bin/vmasync
	if [ ! -x "$bin" ]; then
		go=go
		if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
			go=/usr/local/go/bin/go
		fi
		if ! command -v "$go" >/dev/null 2>&1; then
			echo "install.sh: $bin missing and Go not found; build it elsewhere (CGO_ENABLED=0 go build -o bin/vmasync ./cmd/vmasync) or set VMASYNC_BIN" >&2
			exit 1
		fi
		echo "building $bin (static; the first build takes a few minutes)"
		(cd "$repo" && CGO_ENABLED=0 "$go" build -o bin/vmasync ./cmd/vmasync)
	fi
fi
[ -x "$bin" ] || {
	echo "install.sh: $bin is not an executable" >&2
	exit 1
}

echo "installing into ${DESTDIR:-/}"
install -D -m 0755 "$bin" "$DESTDIR/usr/local/bin/vmasync"
install -D -m 0755 "$here/vzdump-hook" "$DESTDIR/usr/local/lib/vmasync/vzdump-hook"
install -D -m 0755 "$here/vmasync-nightly" "$DESTDIR/usr/local/lib/vmasync/vmasync-nightly"
install -D -m 0644 "$here/systemd/vmasync-push.service" "$DESTDIR/etc/systemd/system/vmasync-push.service"
install -D -m 0644 "$here/systemd/vmasync-push.timer" "$DESTDIR/etc/systemd/system/vmasync-push.timer"
install -d -m 0700 "$DESTDIR/var/lib/vmasync/queue"
if [ -e "$DESTDIR/etc/vmasync.conf" ]; then
	echo "kept the existing $DESTDIR/etc/vmasync.conf (the example is in /usr/local/share/doc/vmasync)"
else
	install -D -m 0600 "$here/vmasync.conf.example" "$DESTDIR/etc/vmasync.conf"
fi
install -D -m 0644 "$here/vmasync.conf.example" "$DESTDIR/usr/local/share/doc/vmasync/vmasync.conf.example"
if [ -f "$repo/docs/guide.md" ]; then
	install -D -m 0644 "$repo/docs/guide.md" "$DESTDIR/usr/local/share/doc/vmasync/guide.md"
fi

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
fi

cat <<'EOF'

Next steps:
  1. Set DUMPDIR, REMOTE (and RCLONE_CONFIG, KEEP_*) in /etc/vmasync.conf.
  2. Try it:        systemctl start vmasync-push.service; journalctl -u vmasync-push.service
  3. Nightly:       systemctl enable --now vmasync-push.timer
  4. After backups: add this line to /etc/vzdump.conf (or a backup job's script option)
                    script: /usr/local/lib/vmasync/vzdump-hook
EOF
