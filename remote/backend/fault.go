package backend

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrCrashed is returned by every call of a Fault backend after its
// simulated crash: the process is "dead" for that backend.
var ErrCrashed = errors.New("simulated crash: the process stopped")

// ErrInjected is returned by the call a Fault backend fails on purpose.
var ErrInjected = errors.New("injected failure")

// FaultMode is what a Fault backend does at the chosen call.
type FaultMode int

const (
	// FailCall fails the call with ErrInjected and changes nothing; later
	// calls work (a transient error: a reset connection, a full disk).
	FailCall FaultMode = iota
	// CrashBefore stops the process before the call takes effect: a Save
	// leaves only a partial temporary object (as a killed upload does), a
	// Remove removes nothing. Every later call fails with ErrCrashed.
	CrashBefore
	// CrashAfter stops the process after the call took effect, before
	// the caller learns it. Every later call fails with ErrCrashed.
	CrashAfter
	// CrashTorn stops the process in the middle of a Save that writes in
	// place, as backends without atomic saves (and vmasync before them)
	// did: half of the object is left under its final name. A Remove is
	// done. Every later call fails with ErrCrashed.
	CrashTorn
)

func (m FaultMode) String() string {
	switch m {
	case FailCall:
		return "fail"
	case CrashBefore:
		return "crash-before"
	case CrashAfter:
		return "crash-after"
	case CrashTorn:
		return "crash-torn"
	}
	return fmt.Sprintf("FaultMode(%d)", int(m))
}

// Fault wraps a Backend and, at the At-th write (Save or Remove, counted
// from 1), fails or "crashes" as Mode says. With At = 0 it only counts and
// records the writes, so that a test can learn how many write points a
// scenario has and then run it once per point.
type Fault struct {
	B    Backend
	At   int
	Mode FaultMode

	mu      sync.Mutex
	writes  int
	crashed bool
	log     []string
}

// NewFault wraps b.
func NewFault(b Backend, at int, mode FaultMode) *Fault {
	return &Fault{B: b, At: at, Mode: mode}
}

func (f *Fault) String() string { return f.B.String() }

// Writes is how many writes were attempted so far.
func (f *Fault) Writes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

// Log lists the writes attempted, as "save NAME" or "remove NAME".
func (f *Fault) Log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

// Crashed reports whether the simulated crash has happened.
func (f *Fault) Crashed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.crashed
}

// write decides the fate of one write call: do it or not, and the error.
func (f *Fault) write(op, name string) (do bool, after bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.crashed {
		return false, false, ErrCrashed
	}
	f.writes++
	f.log = append(f.log, op+" "+name)
	if f.writes != f.At {
		return true, false, nil
	}
	switch f.Mode {
	case FailCall:
		return false, false, fmt.Errorf("%s %s: %w", op, name, ErrInjected)
	case CrashBefore, CrashTorn:
		f.crashed = true
		return op == "remove" && f.Mode == CrashTorn, true, ErrCrashed
	default:
		f.crashed = true
		return true, true, ErrCrashed
	}
}

func (f *Fault) read() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.crashed {
		return ErrCrashed
	}
	return nil
}

// Save saves through the wrapped backend unless this is the faulty call.
func (f *Fault) Save(ctx context.Context, name string, data []byte) error {
	do, after, err := f.write("save", name)
	if do {
		if serr := f.B.Save(ctx, name, data); serr != nil && !after {
			return serr
		}
	} else if errors.Is(err, ErrCrashed) && f.isAt() {
		switch f.Mode {
		case CrashBefore: // a killed upload leaves at most a partial temporary object
			_ = f.B.Save(ctx, name+TempMarker+"crash", data[:len(data)/2])
		case CrashTorn: // an in-place write leaves half the object
			_ = f.B.Save(ctx, name, data[:len(data)/2])
		}
	}
	return err
}

func (f *Fault) isAt() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes == f.At
}

// Remove removes through the wrapped backend unless this is the faulty
// call.
func (f *Fault) Remove(ctx context.Context, name string) error {
	do, after, err := f.write("remove", name)
	if do {
		if rerr := f.B.Remove(ctx, name); rerr != nil && !after {
			return rerr
		}
	}
	return err
}

// Load reads unless crashed.
func (f *Fault) Load(ctx context.Context, name string, off, n int64) ([]byte, error) {
	if err := f.read(); err != nil {
		return nil, err
	}
	return f.B.Load(ctx, name, off, n)
}

// Stat stats unless crashed.
func (f *Fault) Stat(ctx context.Context, name string) (int64, error) {
	if err := f.read(); err != nil {
		return 0, err
	}
	return f.B.Stat(ctx, name)
}

// List lists unless crashed.
func (f *Fault) List(ctx context.Context, dir string, fn func(Entry) error) error {
	if err := f.read(); err != nil {
		return err
	}
	return f.B.List(ctx, dir, fn)
}
