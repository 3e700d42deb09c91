package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote"
)

// openBackup is what pull and pull --disk read from: the repository at
// the remote s under the shared lock (openLocked), the backup VMID@SEL
// (remote.Select), its manifest (with every chunk when whole, else
// perhaps without: remote.Repository.Header) and the chunk index. The
// command runs under the returned context and calls release when done.
func openBackup(e *env, cCtx *cli.Context, o opts, s, vmid, sel string, whole bool) (context.Context, *remote.Repository, remote.Backup, *chunkplan.Manifest, func(), error) {
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
	if err == nil && whole {
		m, err = r.Manifest(ctx, b)
	} else if err == nil {
		m, err = r.Header(ctx, b)
	}
	if err != nil {
		release()
		return nil, nil, remote.Backup{}, nil, nil, err
	}
	return ctx, r, b, m, release, nil
}
