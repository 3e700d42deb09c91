// Package rclonebe is the repository backend on an rclone remote: it maps
// backend.Backend's calls to rclone's fs.Fs, and sets rclone up for the
// process (Setup). It is the only package besides main that imports
// rclone.
//
// Save is atomic (complete or absent) on every remote: where the remote
// can move objects (local, SFTP, SMB, FTP, WebDAV, crypt over those, ...)
// the object is uploaded under a temporary name and moved into place; on
// object stores without moves (S3, B2, Azure, GCS, Swift) a PUT is whole
// or absent by itself.
package rclonebe

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"net/textproto"
	"time"

	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/fserrors"
	"github.com/rclone/rclone/fs/operations"
	"github.com/rclone/rclone/fs/walk"

	"github.com/vmasync/vmasync/remote/backend"
)

// Backend is a backend.Backend on an rclone fs.Fs.
type Backend struct {
	f fs.Fs
	// move is set when objects are saved under a temporary name and moved.
	move bool
}

// New returns the backend of f.
func New(f fs.Fs) *Backend {
	return &Backend{f: f, move: f.Features().Move != nil}
}

// Fs is the underlying rclone remote.
func (b *Backend) Fs() fs.Fs { return b.f }

func (b *Backend) String() string { return fs.ConfigString(b.f) }

// transient marks an error rclone deems retriable (network, server).
type transient struct{ err error }

func (t transient) Error() string        { return t.err.Error() }
func (t transient) Unwrap() error        { return t.err }
func (t transient) Is(target error) bool { return target == backend.ErrTransient }

func classify(err error) error {
	if err == nil {
		return nil
	}
	// An object removed between finding and opening it: the backends say
	// so with the operating system's not-exist error (SFTP, local).
	if errors.Is(err, fs.ErrorObjectNotFound) || errors.Is(err, fs.ErrorDirNotFound) || errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("%w: %v", backend.ErrNotFound, err)
	}
	if fserrors.ShouldRetry(err) || fserrors.IsRetryError(err) {
		return transient{err}
	}
	// An FTP reply of the 4xx class is a transient negative completion
	// (RFC 959 4.2.1: the action may be requested again); rclone's ftp
	// backend retries only 421 and 426 itself. Servers answer 450 to a
	// STOR they could not carry out for the moment.
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 400 && te.Code < 500 {
		return transient{err}
	}
	return err
}

func retries(ctx context.Context) int {
	if n := fs.GetConfig(ctx).LowLevelRetries; n > 0 {
		return n
	}
	return 1
}

// Save uploads data as name, under a temporary name first where the
// remote can move objects. The whole upload is retried on errors rclone
// deems retriable (the backends retry single requests themselves).
func (b *Backend) Save(ctx context.Context, name string, data []byte) error {
	if b.f.Features().IsLocal {
		// rclone would hash the object twice with MD5 to verify a copy
		// between two buffers of this process; vmasync's objects are
		// named by (or carry) their SHA-256 and are checked on reading.
		var ci *fs.ConfigInfo
		ctx, ci = fs.AddConfig(ctx)
		ci.IgnoreChecksum = true
	}
	err := operations.Retry(ctx, name, retries(ctx), func() error {
		if !b.move {
			_, err := operations.RcatSize(ctx, b.f, name, io.NopCloser(newPacedReader(data)), int64(len(data)), time.Now(), nil)
			return err
		}
		var rnd [6]byte
		_, _ = rand.Read(rnd[:])
		tmp := name + backend.TempMarker + hex.EncodeToString(rnd[:])
		o, err := operations.RcatSize(ctx, b.f, tmp, io.NopCloser(newPacedReader(data)), int64(len(data)), time.Now(), nil)
		if err != nil {
			return err
		}
		if _, err := b.f.Features().Move(ctx, o, name); err != nil {
			_ = o.Remove(ctx)
			return fmt.Errorf("moving %s into place: %w", tmp, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("uploading %s: %w", name, classify(err))
	}
	return nil
}

// pacedReader hands the upload at most 1 MiB per Read and hides
// bytes.Reader's WriteTo, so that rclone's bandwidth limiter, whose burst
// is 4 MiB, sees reads it can pace (a whole 16 MiB pack in one read
// exceeds the burst and is not limited at all).
type pacedReader struct{ r *bytes.Reader }

func newPacedReader(b []byte) *pacedReader { return &pacedReader{bytes.NewReader(b)} }

func (p *pacedReader) Read(b []byte) (int, error) {
	if len(b) > 1<<20 {
		b = b[:1<<20]
	}
	return p.r.Read(b)
}

// Load reads n bytes of name from off.
func (b *Backend) Load(ctx context.Context, name string, off, n int64) ([]byte, error) {
	o, err := b.f.NewObject(ctx, name)
	if err != nil {
		return nil, classify(err)
	}
	if off < 0 || n < 0 || (o.Size() >= 0 && off+n > o.Size()) {
		return nil, fmt.Errorf("%s: %d bytes at offset %d of %d: %w", name, n, off, o.Size(), backend.ErrShort)
	}
	buf := make([]byte, n)
	if n == 0 {
		return buf, nil
	}
	err = operations.Retry(ctx, o, retries(ctx), func() error {
		var opt []fs.OpenOption
		if off != 0 || n != o.Size() {
			opt = append(opt, &fs.RangeOption{Start: off, End: off + n - 1})
		}
		rc, err := o.Open(ctx, opt...)
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.ReadFull(rc, buf)
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = fserrors.NoRetryError(fmt.Errorf("%s: %d bytes at offset %d: %w", name, n, off, backend.ErrShort))
		}
		return err
	})
	if err != nil {
		return nil, classify(err)
	}
	return buf, nil
}

// Stat returns the size of name.
func (b *Backend) Stat(ctx context.Context, name string) (int64, error) {
	o, err := b.f.NewObject(ctx, name)
	if err != nil {
		return 0, classify(err)
	}
	return o.Size(), nil
}

// List lists the objects below dir.
func (b *Backend) List(ctx context.Context, dir string, fn func(backend.Entry) error) error {
	// walk logs an ERROR for a missing directory: look first.
	if _, err := b.f.List(ctx, dir); errors.Is(err, fs.ErrorDirNotFound) {
		return nil
	}
	err := walk.ListR(ctx, b.f, dir, true, -1, walk.ListObjects, func(entries fs.DirEntries) error {
		for _, e := range entries {
			if o, ok := e.(fs.Object); ok {
				if err := fn(backend.Entry{Name: o.Remote(), Size: o.Size()}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if errors.Is(err, fs.ErrorDirNotFound) {
		return nil
	}
	return classify(err)
}

// Remove deletes name.
func (b *Backend) Remove(ctx context.Context, name string) error {
	o, err := b.f.NewObject(ctx, name)
	if errors.Is(err, fs.ErrorObjectNotFound) {
		return nil
	}
	if err != nil {
		return classify(err)
	}
	err = operations.Retry(ctx, name, retries(ctx), func() error { return o.Remove(ctx) })
	if errors.Is(err, fs.ErrorObjectNotFound) {
		return nil
	}
	return classify(err)
}

// Mkdir creates the remote directory (for init; most object stores need
// nothing).
func (b *Backend) Mkdir(ctx context.Context) error {
	return operations.Mkdir(ctx, b.f, "")
}
