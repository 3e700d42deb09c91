package remote

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/rclone/rclone/fs/config/obscure"
	"github.com/rclone/rclone/fs/rc"
)

// TestConcurrentPushes (issue 13.7): two processes push the same dumps
// into one empty remote at the same moment, on a local directory and over
// SFTP. Both succeed (neither sees a half-written config, pack, index or
// manifest, and neither writes into an object the other completed), and
// the repository is whole afterwards.
func TestConcurrentPushes(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dumps := t.TempDir()
	var paths []string
	for vm := range 2 {
		paths = append(paths, writeDump(t, dumps, crashVM(uint64(70+vm), 0), fmt.Sprint(600+vm), "2026_11_20-01_00_00", vm == 0))
	}
	sftp := func() string {
		needSSHKeygen(t)
		host := sshKey(t, t.TempDir(), "host")
		addr := serve(t, rc.Params{"type": "sftp", "fs": t.TempDir(), "user": "vm", "pass": "secret", "authorized_keys": "", "key": []string{host}})
		h, p, _ := net.SplitHostPort(addr)
		return fmt.Sprintf(":sftp,host=%s,port=%s,user=vm,pass=%s,known_hosts_file=none:pve", h, p, obscure.MustObscure("secret"))
	}
	for _, c := range []struct {
		name   string
		remote func() string
	}{{"local", func() string { return t.TempDir() + "/remote" }}, {"sftp", sftp}} {
		t.Run(c.name, func(t *testing.T) {
			rs := c.remote()
			cache := t.TempDir()   // shared by the two "processes", as on one host
			for round := range 3 { // the race is won by either side: run it a few times
				var wg sync.WaitGroup
				errs := make([]error, 2)
				for p := range 2 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs[p] = pushOnce(ctx, rs, paths, cache)
					}()
				}
				wg.Wait()
				for p, err := range errs {
					if err != nil {
						t.Fatalf("round %d, push %d: %v", round, p, err)
					}
				}
			}
			b, err := NewFs(ctx, rs)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Open(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			if cr, err := r.Check(ctx, CheckOptions{ReadData: true}); err != nil || len(cr.Problems) > 0 {
				t.Fatalf("check: %v %v", err, cr)
			}
			for _, p := range paths {
				d := mustDump(t, p)
				if got := pullBytes(t, ctx, r, d.VMID, "latest"); !bytes.Equal(got, optimized(t, p)) {
					t.Fatalf("pull %s differs", d.Stem)
				}
			}
		})
	}
}

// pushOnce is one 'vmasync push' process: open or create the repository,
// take the shared lock, push every dump (as the crash harness's pushes).
func pushOnce(ctx context.Context, rs string, paths []string, cacheDir string) error {
	b, err := NewFs(ctx, rs)
	if err != nil {
		return err
	}
	return (&crashWorld{packMax: 64 << 10, cacheDir: cacheDir}).push(ctx, b, paths, func(string) {})
}
