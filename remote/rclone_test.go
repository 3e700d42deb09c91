package remote

import (
	"context"
	"sync"
	"testing"

	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/remote/backend/rclonebe"
)

// The package's tests reach rclone remotes through these.
type Settings = rclonebe.Settings

func Setup(ctx context.Context, s Settings) (context.Context, error) { return rclonebe.Setup(ctx, s) }

// NewFs opens an rclone remote (or a local directory) as a backend.
func NewFs(ctx context.Context, s string) (backend.Backend, error) {
	f, err := rclonebe.NewFs(ctx, s)
	if err != nil {
		return nil, err
	}
	return rclonebe.New(f), nil
}

// hookBackend calls hook before every Save; an error it returns fails
// that Save.
type hookBackend struct {
	backend.Backend
	mu   sync.Mutex
	hook func(name string) error
}

func (h *hookBackend) Save(ctx context.Context, name string, data []byte) error {
	h.mu.Lock()
	hook := h.hook
	h.mu.Unlock()
	if hook != nil {
		if err := hook(name); err != nil {
			return err
		}
	}
	return h.Backend.Save(ctx, name, data)
}

// setUploadHook makes r's backend call hook before every upload, for the
// test's duration.
func setUploadHook(t *testing.T, r *Repository, hook func(name string) error) {
	hb, ok := r.B.(*hookBackend)
	if !ok {
		hb = &hookBackend{Backend: r.B}
		r.B = hb
	}
	hb.mu.Lock()
	hb.hook = hook
	hb.mu.Unlock()
	t.Cleanup(func() { hb.mu.Lock(); hb.hook = nil; hb.mu.Unlock() })
}
