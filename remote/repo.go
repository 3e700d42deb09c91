package remote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/backend"
)

// Repository is an open vmasync repository on a storage backend.
type Repository struct {
	// B is the storage the repository lives in.
	B backend.Backend
	// Config is the repository's config object.
	Config *Config
	// Params are the chunking parameters from Config.
	Params chunkplan.Params
	// Warn receives one line per damaged object set aside and other
	// things the user should know (default: standard error).
	Warn func(msg string)

	// Transfers is how many packs a push uploads at once (0: 4).
	Transfers int
	// CacheDir, if set, holds the local cache of the index (package
	// remote/index, DiskIndex: sorted runs read from disk, so that memory
	// does not grow with the repository); unset, the index is held in
	// memory (52 bytes a chunk).
	CacheDir string

	// Lock timing (LockRefresh, LockStale unless a test shortens them).
	lockRefresh, lockStale time.Duration

	mu    sync.Mutex
	index chunkIndex   // chunk hash -> where it is stored
	packs map[ID]int64 // pack -> size, as listed
	// damage lists what the last LoadIndex set aside; dropped counts the
	// index entries it dropped.
	damage  []Damage
	dropped int
	// recovered holds the packs the last LoadIndex read back from their
	// headers (left unindexed by an interrupted push); indexed every pack
	// with at least one entry in the index.
	recovered, indexed map[ID]bool
	// setAside is set when DamagedDir holds objects: repair found damage,
	// so push checks existing backups against the index (BackupState).
	hasDamagedDir bool
	// nodes caches decoded tree nodes for ArchiveReaders (nodeCache).
	nodes *nodeCache
}

// Close releases the index (a cached index's temporary files).
func (r *Repository) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.index == nil {
		return nil
	}
	err := r.index.Close()
	r.index = nil
	return err
}

// Damage is a damaged or incomplete object found and set aside.
type Damage struct {
	// Object is the object's name; Kind "index", "pack" or "manifest".
	Object, Kind string
	Err          error
}

func (d Damage) String() string { return fmt.Sprintf("%s %s: %v", d.Kind, d.Object, d.Err) }

// ErrNotRepository is returned by Open for a remote without a config
// object.
var ErrNotRepository = errors.New("not a vmasync repository (no config object); run 'vmasync init' or push to it")

// ErrExists is returned by Init for a remote that already holds a
// repository.
var ErrExists = errors.New("the remote already holds a vmasync repository")

// Bounds on what is read whole into memory, by what the format allows.
const (
	// maxConfig: a config object is a few hundred bytes of JSON.
	maxConfig = 64 << 10
	// An index object is bounded by index.MaxObject: a larger or hostile
	// one is set aside like a damaged one, its packs are indexed again
	// from their headers and the next prune replaces it.
	// maxManifest bounds a manifest (36 bytes per chunk: a 14 TiB VM at
	// the default chunk size).
	maxManifest = 2 << 30
	// maxSidecar bounds a .log/.notes/.protected object.
	maxSidecar = 64 << 20
)

func newRepository(b backend.Backend, c *Config) *Repository {
	p, _ := c.Chunker.Params()
	return &Repository{B: b, Config: c, Params: p, lockRefresh: LockRefresh, lockStale: LockStale}
}

// Init creates a new repository in b with chunking parameters p. Of two
// concurrent inits both succeed and both then use the config that is
// stored (the last one written: it is replaced whole, never seen half
// written).
func Init(ctx context.Context, b backend.Backend, p chunkplan.Params) (*Repository, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if _, err := b.Stat(ctx, ConfigName); err == nil {
		return nil, ErrExists
	} else if !errors.Is(err, backend.ErrNotFound) {
		return nil, err
	}
	if m, ok := b.(backend.Mkdirer); ok {
		if err := m.Mkdir(ctx); err != nil {
			return nil, fmt.Errorf("creating the remote directory: %w", err)
		}
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	c := &Config{Format: configFormat, Version: FormatVersion, ID: hex.EncodeToString(id[:]),
		Created: time.Now().UTC().Truncate(time.Second), Chunker: chunkingOf(p), Compression: "zstd", PackSize: DefaultPackSize}
	if err := saveConfig(ctx, b, c); err != nil {
		return nil, err
	}
	return openSettled(ctx, b)
}

// saveConfig stores c as the config object (one atomic save).
func saveConfig(ctx context.Context, b backend.Backend, c *Config) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return b.Save(ctx, ConfigName, append(data, '\n'))
}

// Open opens the repository in b and reads its config. The index is
// loaded by LoadIndex.
func Open(ctx context.Context, b backend.Backend) (*Repository, error) {
	data, err := backend.LoadAll(ctx, b, ConfigName, maxConfig)
	if errors.Is(err, backend.ErrNotFound) {
		return nil, ErrNotRepository
	}
	if err != nil {
		return nil, fmt.Errorf("reading the config: %w", err)
	}
	c, err := decodeConfig(data)
	if err != nil {
		return nil, err
	}
	return newRepository(b, c), nil
}

// openSettled is Open for a repository just created, here or by another
// process at the same moment: that process may be replacing the config,
// and on a remote whose move removes the old object before renaming
// (SFTP servers without posix-rename) the config is briefly absent, so
// it looks again for a second before calling it missing.
func openSettled(ctx context.Context, b backend.Backend) (*Repository, error) {
	for try := 0; ; try++ {
		r, err := Open(ctx, b)
		if !errors.Is(err, ErrNotRepository) || try == 20 {
			return r, err
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// OpenOrInit opens the repository in b, creating it with parameters p if
// the remote has no config object yet. created reports which happened.
func OpenOrInit(ctx context.Context, b backend.Backend, p chunkplan.Params) (r *Repository, created bool, err error) {
	r, err = Open(ctx, b)
	if errors.Is(err, ErrNotRepository) {
		r, err = Init(ctx, b, p)
		if errors.Is(err, ErrExists) { // a concurrent init won
			r, err = openSettled(ctx, b)
			return r, false, err
		}
		return r, err == nil, err
	}
	return r, false, err
}

func (r *Repository) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if r.Warn != nil {
		r.Warn(msg)
		return
	}
	fmt.Fprintln(os.Stderr, "vmasync: "+msg)
}

// list calls fn for every object under dir but temporary ones.
func (r *Repository) list(ctx context.Context, dir string, fn func(e backend.Entry)) error {
	return r.B.List(ctx, dir, func(e backend.Entry) error {
		if !backend.IsTemp(e.Name) {
			fn(e)
		}
		return nil
	})
}

// saveContent stores a content-named object (pack, index). One that
// exists already with the right size is another process's complete copy
// of the same content: it is left alone, never written again, and a save
// that fails while another process's copy arrives counts as done.
func (r *Repository) saveContent(ctx context.Context, name string, data []byte) (written bool, err error) {
	size, err := r.B.Stat(ctx, name)
	if err == nil && size == int64(len(data)) {
		return false, nil
	}
	if err != nil && !errors.Is(err, backend.ErrNotFound) {
		return false, err
	}
	for attempt := 1; ; attempt++ {
		err := r.B.Save(ctx, name, data)
		if err == nil {
			return true, nil
		}
		// Another process saving the same content at the same moment can
		// make this save fail (its move replaced ours, or removed the
		// object for a moment); what matters is that the object is there
		// whole.
		if size, serr := r.B.Stat(ctx, name); serr == nil && size == int64(len(data)) {
			return false, nil
		}
		// A temporary object that vanished under the save (the same race
		// on a server without atomic renames) is saved again.
		if !errors.Is(err, backend.ErrNotFound) || attempt == 3 {
			return false, err
		}
	}
}
