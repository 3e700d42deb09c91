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

	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/operations"
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
	kind := "shared"
	if l.Exclusive {
		kind = "exclusive"
	}
	return fmt.Sprintf("%s lock by %s (pid %d on %s) since %s", kind, l.Command, l.PID, l.Host, l.Time.Local().Format("2006-01-02 15:04:05"))
}

// Stale reports whether the lock's holder is gone: not refreshed for
// LockStale, or on this host with no such process.
func (l LockInfo) Stale(now time.Time) bool {
	if now.Sub(l.Refreshed) > LockStale {
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

// Locked is a lock held by this process; Unlock releases it.
type Locked struct {
	r    *Repository
	info LockInfo
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

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
	for {
		if err := r.writeLock(ctx, info); err != nil {
			return nil, err
		}
		conflict, err := r.conflict(ctx, info)
		if err != nil {
			_ = r.removeObject(ctx, info.Object)
			return nil, err
		}
		if conflict == nil {
			l := &Locked{r: r, info: info, stop: make(chan struct{})}
			l.wg.Add(1)
			go l.refresh(ctx)
			return l, nil
		}
		_ = r.removeObject(ctx, info.Object)
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: %s (wait with --lock-wait, or remove a stale lock with 'vmasync unlock')", ErrLocked, conflict)
		}
		fs.Infof(nil, "waiting for %s", conflict)
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
	return putObject(ctx, r.Fs, info.Object, b)
}

// conflict returns a live lock that conflicts with mine, if any.
func (r *Repository) conflict(ctx context.Context, mine LockInfo) (*LockInfo, error) {
	locks, err := r.Locks(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for _, l := range locks {
		if l.Object == mine.Object || l.Stale(now) {
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
	if err := list(ctx, r.Fs, LocksDir, func(o fs.Object) {
		if strings.HasSuffix(o.Remote(), ".lock") {
			names = append(names, o.Remote())
		}
	}); err != nil {
		return nil, fmt.Errorf("listing locks: %w", err)
	}
	sort.Strings(names)
	var out []LockInfo
	for _, n := range names {
		b, err := getObject(ctx, r.Fs, n)
		if errors.Is(err, fs.ErrorObjectNotFound) {
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

// RemoveLocks removes stale locks (all locks with all set) and returns
// what it removed.
func (r *Repository) RemoveLocks(ctx context.Context, all bool) ([]LockInfo, error) {
	locks, err := r.Locks(ctx)
	if err != nil {
		return nil, err
	}
	var removed []LockInfo
	for _, l := range locks {
		if all || l.Stale(time.Now()) {
			if err := r.removeObject(ctx, l.Object); err != nil {
				return removed, err
			}
			removed = append(removed, l)
		}
	}
	return removed, nil
}

func (r *Repository) removeObject(ctx context.Context, name string) error {
	o, err := r.Fs.NewObject(ctx, name)
	if errors.Is(err, fs.ErrorObjectNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return operations.Retry(ctx, name, retries(ctx), func() error { return o.Remove(ctx) })
}

func (l *Locked) refresh(ctx context.Context) {
	defer l.wg.Done()
	t := time.NewTicker(LockRefresh)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			l.info.Refreshed = time.Now().UTC()
			if err := l.r.writeLock(ctx, l.info); err != nil {
				fs.Errorf(nil, "refreshing the repository lock: %v", err)
			}
		}
	}
}

// Unlock stops refreshing and removes the lock object.
func (l *Locked) Unlock() error {
	var err error
	l.once.Do(func() {
		close(l.stop)
		l.wg.Wait()
		// A cancelled command still removes its lock.
		ctx := context.WithoutCancel(context.Background())
		err = l.r.removeObject(ctx, l.info.Object)
	})
	return err
}
