//go:build unix

package vma

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"syscall"
)

// Windows of the input mapped at a time by a mapper, and their size. A
// window overlaps the next by a cluster so that no cluster's data is ever
// split between two windows. Few small windows keep the resident set
// small whatever the archive size.
const (
	mapWindows    = 4
	mapWindowSize = 16 << 20
)

// mapper gives read-only views of a file through a few mapped windows.
type mapper struct {
	f    *os.File
	size int64
	win  [mapWindows]struct {
		start int64
		b     []byte
		used  uint64
	}
	tick   uint64
	failed bool
}

func newMapper(f *os.File, size int64) *mapper { return &mapper{f: f, size: size} }

// bytes returns the n bytes at off (n ≤ ClusterSize), or nil if they
// cannot be mapped (the caller then reads them).
func (m *mapper) bytes(off, n int64) []byte {
	if m.failed || off < 0 || n > ClusterSize || off+n > m.size {
		return nil
	}
	m.tick++
	for i := range m.win {
		w := &m.win[i]
		if w.b != nil && off >= w.start && off+n <= w.start+int64(len(w.b)) {
			w.used = m.tick
			return w.b[off-w.start : off-w.start+n]
		}
	}
	lru := 0
	for i := range m.win {
		if m.win[i].used < m.win[lru].used {
			lru = i
		}
	}
	w := &m.win[lru]
	if w.b != nil {
		syscall.Munmap(w.b)
		w.b = nil
	}
	start := off / mapWindowSize * mapWindowSize
	length := min(int64(mapWindowSize+ClusterSize), m.size-start)
	b, err := syscall.Mmap(int(m.f.Fd()), start, int(length), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		m.failed = true
		return nil
	}
	w.start, w.b, w.used = start, b, m.tick
	return b[off-start : off-start+n]
}

// close unmaps every window.
func (m *mapper) close() {
	for i := range m.win {
		if m.win[i].b != nil {
			syscall.Munmap(m.win[i].b)
			m.win[i].b = nil
		}
	}
}

// errFault reports a memory fault while reading a mapped input: the file
// shrank (or failed) while it was being read.
var errFault = errors.New("the input file changed or could not be read while it was mapped (was it truncated?)")

// guardFaults runs fn, turning a fault on mapped memory (SIGBUS after the
// input file was truncated) into an error instead of a crash.
func guardFaults(fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			if re, ok := r.(interface{ Addr() uintptr }); ok {
				err = fmt.Errorf("%w (fault at %#x)", errFault, re.Addr())
				return
			}
			panic(r)
		}
	}()
	return fn()
}
