package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress draws a one-line progress display on stderr with \r: bytes
// processed, MB/s and, when the total is known, a percentage.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	on      bool
	label   string
	total   int64        // for the percentage; 0 = unknown
	pos     func() int64 // position compared with total; nil: the byte count
	start   time.Time
	last    time.Time
	n       int64
	lastLen int
	every   time.Duration
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// newProgress returns a progress display for one operation, enabled by
// --progress (auto: only when stderr is a terminal and not --quiet).
func newProgress(e *env, o opts, label string) *progress {
	on := false
	switch o.progress {
	case "always":
		on = true
	case "auto":
		on = !o.quiet && isTerminal(e.stderr)
	}
	now := time.Now()
	return &progress{w: e.stderr, on: on, label: label, start: now, last: now, every: 200 * time.Millisecond}
}

// setTotal sets what the percentage is computed from: pos() of total, or
// the byte count of total when pos is nil.
func (p *progress) setTotal(total int64, pos func() int64) {
	p.mu.Lock()
	p.total, p.pos = total, pos
	p.mu.Unlock()
}

// update records that n bytes have been processed so far.
func (p *progress) update(n int64) {
	if p == nil || !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n = n
	now := time.Now()
	if now.Sub(p.last) < p.every {
		return
	}
	p.last = now
	p.draw(now)
}

func (p *progress) draw(now time.Time) {
	line := p.label + ": " + humanBytes(uint64(p.n))
	if secs := now.Sub(p.start).Seconds(); secs > 0 {
		line += fmt.Sprintf("  %.1f MB/s", float64(p.n)/1e6/secs)
	}
	if p.total > 0 {
		pos := p.n
		if p.pos != nil {
			pos = p.pos()
		}
		pct := min(100, max(0, 100*float64(pos)/float64(p.total)))
		line += fmt.Sprintf("  %3.0f%%", pct)
	}
	pad := ""
	if d := p.lastLen - len(line); d > 0 {
		pad = strings.Repeat(" ", d)
	}
	fmt.Fprint(p.w, "\r"+line+pad)
	p.lastLen = len(line)
}

// done removes the progress line, if one was drawn.
func (p *progress) done() {
	if p == nil || !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastLen > 0 {
		fmt.Fprint(p.w, "\r"+strings.Repeat(" ", p.lastLen)+"\r")
		p.lastLen = 0
	}
}

// humanBytes formats n with binary units: "10 GiB", "3.0 MiB", "512 B".
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / unit
	i := 0
	for v >= unit && i < len(units)-1 {
		v /= unit
		i++
	}
	// Exact multiples print without decimals.
	div := uint64(1) << (10 * (i + 1))
	if n%div == 0 {
		return fmt.Sprintf("%d %s", n/div, units[i])
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
