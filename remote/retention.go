package remote

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// KeepRules are Proxmox VE's retention options (vzdump --prune-backups,
// PBS prune). Zero means the rule is not set.
type KeepRules struct {
	Last, Hourly, Daily, Weekly, Monthly, Yearly int
	// All keeps every backup (as do rules that are all zero).
	All bool
}

// String is the rules as PVE writes them (keep-daily=7,keep-weekly=4).
func (k KeepRules) String() string {
	if k.All || k.none() {
		return "keep-all=1"
	}
	var s []string
	for _, r := range k.rules() {
		if r.n > 0 {
			s = append(s, fmt.Sprintf("%s=%d", r.name, r.n))
		}
	}
	return strings.Join(s, ",")
}

func (k KeepRules) none() bool {
	return k.Last <= 0 && k.Hourly <= 0 && k.Daily <= 0 && k.Weekly <= 0 && k.Monthly <= 0 && k.Yearly <= 0
}

type keepRule struct {
	name string
	n    int
	id   func(t time.Time) string
}

// rules in PVE's order; the period ids use the backup's local time as
// strftime's %Y/%m/%d/%H, %G/%V (ISO week) do.
func (k KeepRules) rules() []keepRule {
	return []keepRule{
		{"keep-last", k.Last, nil},
		{"keep-hourly", k.Hourly, func(t time.Time) string { return t.Format("2006/01/02/15") }},
		{"keep-daily", k.Daily, func(t time.Time) string { return t.Format("2006/01/02") }},
		{"keep-weekly", k.Weekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%04d/%02d", y, w) }},
		{"keep-monthly", k.Monthly, func(t time.Time) string { return t.Format("2006/01") }},
		{"keep-yearly", k.Yearly, func(t time.Time) string { return t.Format("2006") }},
	}
}

// Mark is a prune decision for one backup.
type Mark struct {
	Backup Backup
	// Keep is the decision; Reason the rule that keeps it ("keep-daily",
	// "protected", "keep-all") or why it goes.
	Keep   bool
	Reason string
}

// MarkBackups applies the keep rules to each VM's backups, as PVE's
// prune_mark_backup_group does: backups newest first; protected backups
// are kept and not counted; each rule in turn keeps the newest backup of
// each of its next N periods (hours, days, ...) that no earlier rule has
// covered, marking the other backups of a period it takes as removed; what
// no rule keeps is removed. Marks are returned in the order of backups.
func MarkBackups(backups []Backup, k KeepRules) []Mark {
	byVM := map[string][]int{}
	for i, b := range backups {
		byVM[b.VMID] = append(byVM[b.VMID], i)
	}
	marks := make([]Mark, len(backups))
	for i, b := range backups {
		marks[i].Backup = b
	}
	for _, idx := range byVM {
		sort.SliceStable(idx, func(a, b int) bool { return backups[idx[a]].Time.After(backups[idx[b]].Time) })
		decided := map[int]bool{}
		for _, i := range idx {
			if backups[i].Protected {
				marks[i] = Mark{Backup: backups[i], Keep: true, Reason: "protected"}
				decided[i] = true
			}
		}
		if k.All || k.none() {
			for _, i := range idx {
				if !decided[i] {
					marks[i] = Mark{Backup: backups[i], Keep: true, Reason: "keep-all"}
				}
			}
			continue
		}
		for _, rule := range k.rules() {
			if rule.n <= 0 {
				continue
			}
			id := rule.id
			if id == nil { // keep-last: every backup is its own period
				id = func(t time.Time) string { return t.String() }
			}
			already := map[string]bool{}
			for _, i := range idx {
				if decided[i] && marks[i].Keep && marks[i].Reason != "protected" {
					already[id(backups[i].Time)] = true
				}
			}
			newly := map[string]bool{}
			for _, i := range idx {
				p := id(backups[i].Time)
				if decided[i] || already[p] {
					continue
				}
				if !newly[p] {
					if len(newly) >= rule.n {
						break
					}
					newly[p] = true
					marks[i] = Mark{Backup: backups[i], Keep: true, Reason: rule.name}
				} else {
					marks[i] = Mark{Backup: backups[i], Keep: false, Reason: "a newer backup of the same period is kept by " + rule.name}
				}
				decided[i] = true
			}
		}
		for _, i := range idx {
			if !decided[i] {
				marks[i] = Mark{Backup: backups[i], Keep: false, Reason: "kept by no rule"}
			}
		}
	}
	return marks
}

// Forget removes the backups' manifests (first, so that they disappear at
// once) and sidecars. Their data stays until GC.
func (r *Repository) Forget(ctx context.Context, backups []Backup) error {
	for _, b := range backups {
		if b.Protected {
			return fmt.Errorf("backup %s is protected", b.Name)
		}
		if err := r.B.Remove(ctx, b.Object); err != nil {
			return fmt.Errorf("removing %s: %w", b.Name, err)
		}
		for _, obj := range b.Sidecars {
			if err := r.B.Remove(ctx, obj); err != nil {
				return fmt.Errorf("removing %s: %w", obj, err)
			}
		}
	}
	return nil
}
