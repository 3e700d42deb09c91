package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote"
)

// manifestRead is what openBackup reads of a backup's manifest.
type manifestRead int

const (
	// readHeader: the manifest without reading a format 3 chunk tree
	// (remote.Repository.Header; format 1 and 2 manifests hold their
	// chunks).
	readHeader manifestRead = iota
	// readWhole: the manifest with every chunk (remote.Repository.Manifest).
	readWhole
	// readNone: nothing; the caller opens the backup itself
	// (remote.Repository.OpenBackup) and the manifest returned is nil.
	readNone
)

// openBackup is what pull and pull --disk read from: the repository at
// the remote s under the shared lock (openLocked), the backup VMID@SEL
// (remote.Select), its manifest as read says and the chunk index. The
// command runs under the returned context and calls release when done.
func openBackup(e *env, cCtx *cli.Context, o opts, s, vmid, sel string, read manifestRead) (context.Context, *remote.Repository, remote.Backup, *chunkplan.Manifest, func(), error) {
	ctx, r, release, err := openLocked(e, cCtx, o, s, sharedLock)
	if err != nil {
		return nil, nil, remote.Backup{}, nil, nil, err
	}
	backups, err := r.Backups(ctx)
	var b remote.Backup
	if err == nil {
		b, err = remote.Select(backups, vmid, sel)
	}
	if err == nil {
		_, err = r.LoadIndex(ctx, false) // a chunk tree's nodes are found through it
	}
	var m *chunkplan.Manifest
	if err == nil && read == readWhole {
		m, err = r.Manifest(ctx, b)
	} else if err == nil && read == readHeader {
		m, err = r.Header(ctx, b)
	}
	if err != nil {
		release()
		return nil, nil, remote.Backup{}, nil, nil, err
	}
	return ctx, r, b, m, release, nil
}
