package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/fserrors"
	"github.com/rclone/rclone/fs/operations"
	"github.com/rclone/rclone/fs/walk"

	"github.com/vmasync/vmasync/chunkplan"
)

// Repository is an open vmasync repository on an rclone remote.
type Repository struct {
	// Fs is the remote the repository lives in.
	Fs fs.Fs
	// Config is the repository's config object.
	Config *Config
	// Params are the chunking parameters from Config.
	Params chunkplan.Params

	mu    sync.Mutex
	index *chunkIndex  // chunk hash -> where it is stored
	packs map[ID]int64 // pack -> size, as listed
}

// ErrNotRepository is returned by Open for a remote without a config
// object.
var ErrNotRepository = errors.New("not a vmasync repository (no config object); run 'vmasync init' or push to it")

// ErrExists is returned by Init for a remote that already holds a
// repository.
var ErrExists = errors.New("the remote already holds a vmasync repository")

// maxSmallObject bounds objects read whole into memory (config, index,
// manifests: a 10 TiB backup at 64 KiB chunks has a 6 GB manifest, far
// beyond any real VM; 2 GiB is a bound, not a size).
const maxSmallObject = 2 << 30

// Init creates a new repository in f with chunking parameters p.
func Init(ctx context.Context, f fs.Fs, p chunkplan.Params) (*Repository, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if ok, err := fs.FileExists(ctx, f, ConfigName); err != nil {
		return nil, err
	} else if ok {
		return nil, ErrExists
	}
	if err := operations.Mkdir(ctx, f, ""); err != nil {
		return nil, fmt.Errorf("creating the remote directory: %w", err)
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	c := &Config{Format: configFormat, Version: FormatVersion, ID: hex.EncodeToString(id[:]),
		Created: time.Now().UTC().Truncate(time.Second), Chunker: chunkingOf(p), Compression: "zstd", PackSize: DefaultPackSize}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := putObject(ctx, f, ConfigName, append(b, '\n')); err != nil {
		return nil, err
	}
	return Open(ctx, f)
}

// Open opens the repository in f and reads its config. The index is
// loaded by LoadIndex.
func Open(ctx context.Context, f fs.Fs) (*Repository, error) {
	b, err := getObject(ctx, f, ConfigName)
	if errors.Is(err, fs.ErrorObjectNotFound) || errors.Is(err, fs.ErrorDirNotFound) {
		return nil, ErrNotRepository
	}
	if err != nil {
		return nil, fmt.Errorf("reading the config: %w", err)
	}
	c, err := decodeConfig(b)
	if err != nil {
		return nil, err
	}
	p, _ := c.Chunker.Params()
	return &Repository{Fs: f, Config: c, Params: p}, nil
}

// OpenOrInit opens the repository in f, creating it with parameters p if
// the remote has no config object yet. created reports which happened.
func OpenOrInit(ctx context.Context, f fs.Fs, p chunkplan.Params) (r *Repository, created bool, err error) {
	r, err = Open(ctx, f)
	if errors.Is(err, ErrNotRepository) {
		r, err = Init(ctx, f, p)
		if errors.Is(err, ErrExists) { // a concurrent init won
			r, err = Open(ctx, f)
			return r, false, err
		}
		return r, err == nil, err
	}
	return r, false, err
}

// list calls fn for every object under dir (recursively); a missing dir
// lists nothing.
func list(ctx context.Context, f fs.Fs, dir string, fn func(o fs.Object)) error {
	// walk logs an ERROR for a missing directory: look first.
	if _, err := f.List(ctx, dir); errors.Is(err, fs.ErrorDirNotFound) {
		return nil
	}
	err := walk.ListR(ctx, f, dir, true, -1, walk.ListObjects, func(entries fs.DirEntries) error {
		for _, e := range entries {
			if o, ok := e.(fs.Object); ok {
				fn(o)
			}
		}
		return nil
	})
	if errors.Is(err, fs.ErrorDirNotFound) {
		return nil
	}
	return err
}

// IndexStats describes the loaded index.
type IndexStats struct {
	Chunks, Packs, IndexObjects int
	// Recovered counts packs found without an index entry (left by an
	// interrupted push) whose headers were read and indexed.
	Recovered int
}

// LoadIndex reads every index object and lists the packs. Packs that no
// index covers (an interrupted push uploaded them but died before writing
// its index) are read back from their headers and indexed, so their chunks
// are not uploaded again; with write set, an index object for them is
// stored.
func (r *Repository) LoadIndex(ctx context.Context, write bool) (IndexStats, error) {
	var st IndexStats
	packs := map[ID]int64{}
	if err := list(ctx, r.Fs, PacksDir, func(o fs.Object) {
		name := path.Base(o.Remote())
		if id, ok := parseID(strings.TrimSuffix(name, packSuffix)); ok && strings.HasSuffix(name, packSuffix) {
			packs[id] = o.Size()
		}
	}); err != nil {
		return st, fmt.Errorf("listing packs: %w", err)
	}
	var names []string
	if err := list(ctx, r.Fs, IndexDir, func(o fs.Object) {
		if strings.HasSuffix(o.Remote(), indexSuffix) {
			names = append(names, o.Remote())
		}
	}); err != nil {
		return st, fmt.Errorf("listing index objects: %w", err)
	}
	sort.Strings(names)
	index := newChunkIndex()
	covered := map[ID]bool{}
	for _, name := range names {
		id, ok := parseID(strings.TrimSuffix(path.Base(name), indexSuffix))
		if !ok {
			continue
		}
		b, err := getObject(ctx, r.Fs, name)
		if err != nil {
			return st, fmt.Errorf("reading %s: %w", name, err)
		}
		entries, err := decodeIndex(b, id)
		if err != nil {
			return st, err
		}
		for _, e := range entries {
			covered[e.Pack] = true
			if _, ok := packs[e.Pack]; !ok {
				continue // pack removed (by prune) or missing: check reports it
			}
			index.load(e.Hash, e.Location)
		}
		st.IndexObjects++
	}
	var orphans []indexEntryOf
	for id, size := range packs {
		if covered[id] {
			continue
		}
		entries, err := r.readPackHeader(ctx, id, size)
		if err != nil {
			fs.Logf(nil, "ignoring pack %s: not indexed and unreadable, probably cut short by an interrupted upload (%v)", id.Short(), err)
			continue
		}
		st.Recovered++
		for _, e := range entries {
			loc := Location{Pack: id, Offset: e.Offset, Stored: e.Stored, Raw: e.Raw, Type: e.Type}
			orphans = append(orphans, indexEntryOf{Hash: e.Hash, Location: loc})
			index.load(e.Hash, loc)
		}
	}
	if write && len(orphans) > 0 {
		if _, _, err := r.writeIndex(ctx, orphans); err != nil {
			return st, err
		}
		st.IndexObjects++
	}
	index.freeze()
	r.mu.Lock()
	r.index, r.packs = index, packs
	r.mu.Unlock()
	st.Chunks, st.Packs = index.len(), len(packs)
	return st, nil
}

// readPackHeader reads a pack's header with two ranged reads (and, from
// format version 2 on, checks it against the pack's name).
func (r *Repository) readPackHeader(ctx context.Context, id ID, size int64) ([]packEntry, error) {
	if size < int64(packTrailer)+4 {
		return nil, fmt.Errorf("%w: pack %s: %d bytes", ErrCorruptObject, id.Short(), size)
	}
	name := packName(id)
	t, err := getRange(ctx, r.Fs, name, size-int64(packTrailer), int64(packTrailer))
	if err != nil {
		return nil, err
	}
	n, err := packHeaderLen(t, size)
	if err != nil {
		return nil, err
	}
	start := size - int64(packTrailer) - int64(n)
	hdr, err := getRange(ctx, r.Fs, name, start, int64(n))
	if err != nil {
		return nil, err
	}
	if r.Config.Version != 1 {
		if err := checkPackTail(append(hdr, t...), id); err != nil {
			return nil, err
		}
	}
	return decodePackHeader(hdr, start)
}

// writeIndex uploads entries as an index object and returns its id and
// size.
func (r *Repository) writeIndex(ctx context.Context, entries []indexEntryOf) (ID, int, error) {
	b := encodeIndex(entries)
	id := ID(sha256.Sum256(b))
	return id, len(b), putObject(ctx, r.Fs, indexName(id), b)
}

// Lookup returns where chunk h is stored.
func (r *Repository) Lookup(h ID) (Location, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.index.get(h)
}

func (r *Repository) addIndex(entries []indexEntryOf, packID ID, packSize int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.packs[packID] = packSize
	for _, e := range entries {
		r.index.add(e.Hash, e.Location)
	}
}

// putObject uploads b as name, retrying the whole upload on errors rclone
// deems retriable (the backends retry single requests themselves).
func putObject(ctx context.Context, f fs.Fs, name string, b []byte) error {
	tries := fs.GetConfig(ctx).LowLevelRetries
	if tries < 1 {
		tries = 1
	}
	err := operations.Retry(ctx, name, tries, func() error {
		if uploadHook != nil {
			if err := uploadHook(name); err != nil {
				return err
			}
		}
		_, err := operations.RcatSize(ctx, f, name, io.NopCloser(bytes.NewReader(b)), int64(len(b)), time.Now(), nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("uploading %s: %w", name, err)
	}
	return nil
}

// uploadHook, when set (by tests), is called before every upload; an
// error it returns fails that attempt.
var uploadHook func(name string) error

// getObject downloads a whole (small) object.
func getObject(ctx context.Context, f fs.Fs, name string) ([]byte, error) {
	o, err := f.NewObject(ctx, name)
	if err != nil {
		return nil, err
	}
	var b []byte
	err = operations.Retry(ctx, name, retries(ctx), func() error {
		rc, err := o.Open(ctx)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err = readAllLimit(rc, maxSmallObject)
		return err
	})
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != o.Size() && o.Size() >= 0 {
		return nil, fmt.Errorf("%s: read %d bytes of %d", name, len(b), o.Size())
	}
	return b, nil
}

// getRange downloads n bytes of name from offset off.
func getRange(ctx context.Context, f fs.Fs, name string, off, n int64) ([]byte, error) {
	o, err := f.NewObject(ctx, name)
	if err != nil {
		return nil, err
	}
	return readRange(ctx, o, off, n)
}

func readRange(ctx context.Context, o fs.Object, off, n int64) ([]byte, error) {
	b := make([]byte, n)
	err := operations.Retry(ctx, o, retries(ctx), func() error {
		rc, err := o.Open(ctx, &fs.RangeOption{Start: off, End: off + n - 1})
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.ReadFull(rc, b)
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = fserrors.NoRetryError(fmt.Errorf("%s: short read at offset %d", o.Remote(), off))
		}
		return err
	})
	return b, err
}

func retries(ctx context.Context) int {
	if n := fs.GetConfig(ctx).LowLevelRetries; n > 0 {
		return n
	}
	return 1
}
