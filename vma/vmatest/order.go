package vmatest

import (
	"iter"
	"math/rand/v2"
	"slices"

	"github.com/vmasync/vmasync/vma"
)

// StoredOrder yields the clusters in the order Write stores them, as
// (disk index, cluster number). ProxmoxLike with PullForward > 0 holds 16
// bytes per cluster in memory while iterating; the other orders hold
// nothing per cluster.
func (s Spec) StoredOrder() iter.Seq2[int, uint64] {
	switch s.Order {
	case ProxmoxLike:
		return s.proxmoxOrder
	case CreateLike:
		return s.createOrder
	}
	return s.ordered
}

func (s Spec) ordered(yield func(int, uint64) bool) {
	for i := range s.Disks {
		for c := range s.clusters(i) {
			if !yield(i, c) {
				return
			}
		}
	}
}

func (s Spec) rng() *rand.Rand {
	return rand.New(rand.NewPCG(hash(s.Seed, saltOrd, s.Generation, uint64(s.Order)), 0))
}

func (s Spec) createOrder(yield func(int, uint64) bool) {
	r := s.rng()
	next := make([]uint64, len(s.Disks))
	var active []int
	for i := range s.Disks {
		if s.clusters(i) > 0 {
			active = append(active, i)
		}
	}
	for len(active) > 0 {
		j := r.IntN(len(active))
		d := active[j]
		if !yield(d, next[d]) {
			return
		}
		next[d]++
		if next[d] == s.clusters(d) {
			active = slices.Delete(active, j, j+1)
		}
	}
}

// blockCopy yields a drive's clusters as Proxmox's block-copy does: 16
// workers, 1 MiB (16-cluster) tasks taken in ascending order, clusters of
// the running tasks interleaved, a worker often continuing for a while.
func blockCopy(r *rand.Rand, n uint64, yield func(uint64) bool) bool {
	const workers, task = 16, 16
	type run struct{ next, end uint64 }
	var active []run
	var queued uint64 // next task start
	take := func() (run, bool) {
		if queued >= n {
			return run{}, false
		}
		t := run{queued, min(queued+task, n)}
		queued = t.end
		return t, true
	}
	for range workers {
		if t, ok := take(); ok {
			active = append(active, t)
		}
	}
	cur := 0
	for len(active) > 0 {
		if cur >= len(active) || r.IntN(4) == 0 {
			cur = r.IntN(len(active))
		}
		t := &active[cur]
		if !yield(t.next) {
			return false
		}
		t.next++
		if t.next == t.end {
			if nt, ok := take(); ok {
				*t = nt
			} else {
				active = slices.Delete(active, cur, cur+1)
			}
		}
	}
	return true
}

func (s Spec) proxmoxOrder(yield func(int, uint64) bool) {
	r := s.rng()
	// vmstate first, in order; then the drives one after another.
	var drives []int
	for i, d := range s.Disks {
		if d.Name == vma.VMStateName {
			for c := range s.clusters(i) {
				if !yield(i, c) {
					return
				}
			}
		} else {
			drives = append(drives, i)
		}
	}
	if s.PullForward <= 0 {
		for _, d := range drives {
			if !blockCopy(r, s.clusters(d), func(c uint64) bool { return yield(d, c) }) {
				return
			}
		}
		return
	}
	// With pull-forward: materialise the natural order, move a fraction of
	// the clusters to a random earlier position, and stable-sort.
	type ent struct{ key, v uint64 }
	var seq []ent
	for _, d := range drives {
		blockCopy(r, s.clusters(d), func(c uint64) bool {
			i := uint64(len(seq))
			key := 2*i + 1
			if i > 0 && r.Float64() < s.PullForward {
				key = 2 * r.Uint64N(i)
			}
			seq = append(seq, ent{key, uint64(d)<<32 | c})
			return true
		})
	}
	slices.SortStableFunc(seq, func(a, b ent) int {
		switch {
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		}
		return 0
	})
	for _, e := range seq {
		if !yield(int(e.v>>32), e.v&(1<<32-1)) {
			return
		}
	}
}
