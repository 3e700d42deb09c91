package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/vmasync/vmasync/internal/input"
)

// progress draws a one-line progress display on stderr with \r: bytes
// processed, MB/s and, when the total is known, a bar, the percentage and
// the time left. The line is cut to the terminal's width.
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
	width   int    // columns of the terminal; 0: do not cut
	items   string // set: n counts these ("packs"), not bytes
}

// isTerminal reports whether w is a terminal (not merely a character
// device: /dev/null is none).
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
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
	width := 0
	if f, ok := e.stderr.(*os.File); ok {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil {
			width = w
		}
	}
	now := time.Now()
	return &progress{w: e.stderr, on: on, label: label, start: now, last: now, every: 200 * time.Millisecond, width: width}
}

// setTotal sets what the percentage is computed from: pos() of total, or
// the byte count of total when pos is nil.
func (p *progress) setTotal(total int64, pos func() int64) {
	p.mu.Lock()
	p.total, p.pos = total, pos
	p.mu.Unlock()
}

// show records an input's progress: the bar is its position in the
// stored (compressed) stream against that stream's size, the byte count
// what the codec has read.
func (p *progress) show(pr input.Progress) {
	if p == nil || !p.on {
		return
	}
	p.setTotal(pr.Size, func() int64 { return pr.Pos })
	p.update(pr.Read)
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
	secs := now.Sub(p.start).Seconds()
	stats := humanBytes(uint64(p.n))
	if p.items != "" {
		stats = fmt.Sprintf("%d/%d %s", p.n, p.total, p.items)
	} else if secs > 0 {
		stats += fmt.Sprintf("  %.1f MB/s", float64(p.n)/1e6/secs)
	}
	if p.total > 0 {
		pos := p.n
		if p.pos != nil {
			pos = p.pos()
		}
		frac := min(1, max(0, float64(pos)/float64(p.total)))
		stats += fmt.Sprintf("  %s %3.0f%%", progressBar(frac, 20), 100*frac)
		if frac > 0 && frac < 1 && secs >= 1 {
			left := time.Duration(secs * (1 - frac) / frac * float64(time.Second))
			stats += "  ETA " + clock(left)
		}
	}
	label := p.label
	// One column stays free: writing the last one wraps some terminals.
	if room := p.width - 1 - len(": ") - len(stats); p.width > 0 && len(label) > room {
		label = cutMiddle(label, room)
	}
	line := label + ": " + stats
	pad := ""
	if d := p.lastLen - len(line); d > 0 {
		pad = strings.Repeat(" ", d)
	}
	fmt.Fprint(p.w, "\r"+line+pad)
	p.lastLen = len(line)
}

// progressBar draws frac (0..1) as a bar of width cells: [=====>    ].
func progressBar(frac float64, width int) string {
	full := int(frac * float64(width))
	bar := strings.Repeat("=", full)
	if full < width {
		bar += ">" + strings.Repeat(" ", width-full-1)
	}
	return "[" + bar + "]"
}

// clock formats d as h:mm:ss or m:ss.
func clock(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// cutMiddle shortens s to n bytes (at least 5) with "..." in the middle,
// keeping both ends of a file name.
func cutMiddle(s string, n int) string {
	n = max(n, 5)
	if len(s) <= n {
		return s
	}
	head := (n - 3) / 2
	return s[:head] + "..." + s[len(s)-(n-3-head):]
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
