package backend

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// Mem is a Backend in memory, safe for concurrent use. Tests use it, alone
// or under Fault.
type Mem struct {
	mu      sync.Mutex
	objects map[string][]byte
	mtime   map[string]time.Time
	// Reads counts the bytes returned by Load (for tests that check what
	// an operation downloads).
	reads int64
}

// NewMem returns an empty in-memory backend.
func NewMem() *Mem {
	return &Mem{objects: map[string][]byte{}, mtime: map[string]time.Time{}}
}

func (m *Mem) String() string { return "memory" }

// Save stores a copy of data.
func (m *Mem) Save(ctx context.Context, name string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[name] = slices.Clone(data)
	m.mtime[name] = time.Now()
	return nil
}

// Load returns a copy of the range.
func (m *Mem) Load(ctx context.Context, name string, off, n int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objects[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if off < 0 || n < 0 || off+n > int64(len(b)) {
		return nil, fmt.Errorf("%s: %d bytes at offset %d of %d: %w", name, n, off, len(b), ErrShort)
	}
	m.reads += n
	return slices.Clone(b[off : off+n]), nil
}

// Stat returns the size of name.
func (m *Mem) Stat(ctx context.Context, name string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objects[name]
	if !ok {
		return 0, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	return int64(len(b)), nil
}

// List lists the objects below dir in name order.
func (m *Mem) List(ctx context.Context, dir string, fn func(Entry) error) error {
	m.mu.Lock()
	prefix := strings.TrimSuffix(dir, "/") + "/"
	var es []Entry
	for _, name := range slices.Sorted(maps.Keys(m.objects)) {
		if dir == "" || strings.HasPrefix(name, prefix) {
			es = append(es, Entry{Name: name, Size: int64(len(m.objects[name])), ModTime: m.mtime[name]})
		}
	}
	m.mu.Unlock()
	for _, e := range es {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// Remove deletes name.
func (m *Mem) Remove(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objects, name)
	delete(m.mtime, name)
	return nil
}

// BytesRead is how many bytes Load has returned so far.
func (m *Mem) BytesRead() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reads
}

// Put sets an object's bytes directly (tests use it to damage objects).
func (m *Mem) Put(name string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[name] = slices.Clone(data)
	m.mtime[name] = time.Now()
}

// Get returns an object's bytes (nil, false if missing).
func (m *Mem) Get(name string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objects[name]
	return slices.Clone(b), ok
}

// Names lists every object name, sorted.
func (m *Mem) Names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.objects))
}

// Clone returns an independent copy of the backend's objects.
func (m *Mem) Clone() *Mem {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := NewMem()
	for k, v := range m.objects {
		c.objects[k] = slices.Clone(v)
		c.mtime[k] = m.mtime[k]
	}
	return c
}
