package remote

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmasync/vmasync/remote/backend"
)

// Lock timing: a lock is refreshed every LockRefresh and counts as stale
// when it has not been refreshed for LockStale (or, on the same host,
// when its process is gone).
const (
	LockRefresh = 5 * time.Minute
	LockStale   = 30 * time.Minute
)

// LockInfo is the content of a lock object.
type LockInfo struct {
	Exclusive bool      `json:"exclusive"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Command   string    `json:"command"`
	Time      time.Time `json:"time"`
	Refreshed time.Time `json:"refreshed"`
	// Object is the lock's object name (not stored).
	Object string `json:"-"`
}

func (l LockInfo) String() string {
	if l.PID == 0 && l.Time.IsZero() { // unreadable, or a temporary object
		return l.Command
	}
	kind := "shared"
	if l.Exclusive {
		kind = "exclusive"
	}
	return fmt.Sprintf("%s lock by %s (pid %d on %s) since %s", kind, l.Command, l.PID, l.Host, l.Time.Local().Format("2006-01-02 15:04:05"))
}

// Stale reports whether the lock's holder is gone: not refreshed for
// LockStale, or on this host with no such process.
func (l LockInfo) Stale(now time.Time) bool { return l.staleAfter(now, LockStale) }

func (l LockInfo) staleAfter(now time.Time, stale time.Duration) bool {
	if now.Sub(l.Refreshed) > stale {
		return true
	}
	if host, _ := os.Hostname(); host == l.Host && l.PID > 0 {
		if err := syscall.Kill(l.PID, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
	}
	return false
}

// ErrLocked is wrapped by Lock's error when a conflicting lock is held
// beyond the wait.
var ErrLocked = errors.New("repository is locked")

// ErrLockLost is the cause with which a Locked's context is cancelled
// when the lock could not be refreshed for so long that other processes
// might soon take it for stale.
var ErrLockLost = errors.New("the repository lock could not be refreshed; stopped before another process could take it for stale")

// Locked is a lock held by this process; Unlock releases it.
type Locked struct {
	r      *Repository
	info   LockInfo
	ctx    context.Context
	cancel context.CancelCauseFunc
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

// Context is done when the lock is lost (cause ErrLockLost) or released:
// a command runs under it, so that it stops before another process may
// treat its lock as stale.
func (l *Locked) Context() context.Context { return l.ctx }

// Lock takes a shared (push, pull, check) or exclusive (prune) lock on
// the repository, waiting up to wait for conflicting locks to go. Shared
// locks exclude exclusive ones only. Both sides write their lock object
// first and then look for conflicting ones, backing off if they find one,
// so two processes never both proceed.
func (r *Repository) Lock(ctx context.Context, exclusive bool, command string, wait time.Duration) (*Locked, error) {
	host, _ := os.Hostname()
	var rnd [4]byte
	_, _ = crand.Read(rnd[:])
	now := time.Now().UTC()
	info := LockInfo{Exclusive: exclusive, Host: host, PID: os.Getpid(), Command: command, Time: now, Refreshed: now}
	info.Object = fmt.Sprintf("%s/%s-%s-%d-%s.lock", LocksDir, now.Format("20060102T150405Z"), sanitize(host), info.PID, hex.EncodeToString(rnd[:]))
	deadline := time.Now().Add(wait)
	said := false
	for {
		if err := r.writeLock(ctx, info); err != nil {
			return nil, err
		}
		conflict, err := r.conflict(ctx, info)
		if err != nil {
			_ = r.B.Remove(ctx, info.Object)
			return nil, err
		}
		if conflict == nil {
			l := &Locked{r: r, info: info, stop: make(chan struct{})}
			l.ctx, l.cancel = context.WithCancelCause(ctx)
			l.wg.Add(1)
			go l.refresh()
			return l, nil
		}
		_ = r.B.Remove(ctx, info.Object)
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: %s (wait with --lock-wait, or remove a stale lock with 'vmasync unlock')", ErrLocked, conflict)
		}
		if !said {
			r.warnf("waiting up to %s for the %s to go", time.Until(deadline).Round(time.Second), conflict)
			said = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(500+rand.IntN(1500)) * time.Millisecond):
		}
	}
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

func (r *Repository) writeLock(ctx context.Context, info LockInfo) error {
	b, _ := json.Marshal(info)
	return r.B.Save(ctx, info.Object, b)
}

// conflict returns a live lock that conflicts with mine, if any.
func (r *Repository) conflict(ctx context.Context, mine LockInfo) (*LockInfo, error) {
	locks, err := r.Locks(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for _, l := range locks {
		if l.Object == mine.Object || l.staleAfter(now, r.lockStale) {
			continue
		}
		if mine.Exclusive || l.Exclusive {
			return &l, nil
		}
	}
	return nil, nil
}

// Locks lists the lock objects (unreadable ones are reported as stale
// exclusive locks from the epoch, so that unlock removes them).
func (r *Repository) Locks(ctx context.Context) ([]LockInfo, error) {
	var names []string
	if err := r.list(ctx, LocksDir, func(o backend.Entry) {
		if strings.HasSuffix(o.Name, ".lock") {
			names = append(names, o.Name)
		}
	}); err != nil {
		return nil, fmt.Errorf("listing locks: %w", err)
	}
	sort.Strings(names)
	var out []LockInfo
	for _, n := range names {
		b, err := backend.LoadAll(ctx, r.B, n, maxConfig)
		if errors.Is(err, backend.ErrNotFound) {
			continue // released meanwhile
		}
		var l LockInfo
		if err != nil || json.Unmarshal(b, &l) != nil {
			l = LockInfo{Exclusive: true, Host: "?", Command: "unreadable lock " + path.Base(n)}
		}
		l.Object = n
		out = append(out, l)
	}
	return out, nil
}

// RemoveLocks removes stale locks (all locks with all set, and then also
// the temporary objects of interrupted lock saves) and returns what it
// removed.
func (r *Repository) RemoveLocks(ctx context.Context, all bool) ([]LockInfo, error) {
	locks, err := r.Locks(ctx)
	if err != nil {
		return nil, err
	}
	var removed []LockInfo
	for _, l := range locks {
		if all || l.Stale(time.Now()) {
			if err := r.B.Remove(ctx, l.Object); err != nil {
				return removed, err
			}
			removed = append(removed, l)
		}
	}
	if all {
		// With no vmasync command running, the temporary objects of lock
		// saves that were killed are litter too.
		var temps []string
		err := r.B.List(ctx, LocksDir, func(e backend.Entry) error {
			if backend.IsTemp(e.Name) {
				temps = append(temps, e.Name)
			}
			return nil
		})
		if err != nil {
			return removed, err
		}
		for _, n := range temps {
			if err := r.B.Remove(ctx, n); err != nil {
				return removed, err
			}
			removed = append(removed, LockInfo{Object: n, Command: "temporary lock object " + path.Base(n), Host: "?", Exclusive: true})
		}
	}
	return removed, nil
}

// refresh rewrites the lock every lockRefresh. When that fails it tries
// again every tenth of that; once the lock has gone unrefreshed for
// lockStale minus two refresh periods, it cancels the command (ErrLockLost)
// before another process can take the lock for stale and, say, prune data
// the command relies on.
func (l *Locked) refresh() {
	defer l.wg.Done()
	every, stale := l.r.lockRefresh, l.r.lockStale
	giveUp := max(stale-2*every, every)
	last := time.Now()
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		info := l.info
		info.Refreshed = time.Now().UTC()
		if err := l.r.writeLock(l.ctx, info); err != nil {
			if time.Since(last) >= giveUp {
				l.cancel(fmt.Errorf("%w (last error: %v)", ErrLockLost, err))
				return
			}
			l.r.warnf("refreshing the repository lock: %v (trying again)", err)
			t.Reset(max(every/10, time.Millisecond))
			continue
		}
		last = time.Now()
		t.Reset(every)
	}
}

// Unlock stops refreshing and removes the lock object.
func (l *Locked) Unlock() error {
	var err error
	l.once.Do(func() {
		close(l.stop)
		l.wg.Wait()
		l.cancel(nil)
		// A cancelled command still removes its lock.
		ctx := context.WithoutCancel(l.ctx)
		err = l.r.B.Remove(ctx, l.info.Object)
	})
	return err
}
