package vma

import (
	"container/heap"
	"io"
)

// keyHeap is a max-heap of window keys (output order), so the streaming
// reorder can spill the cluster needed last. Keys drained from the window
// stay in the heap until they surface (skipped then) or the heap is
// rebuilt when stale keys outnumber live ones.
type keyHeap []uint64

func (h keyHeap) Len() int           { return len(h) }
func (h keyHeap) Less(i, j int) bool { return h[i] > h[j] }
func (h keyHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *keyHeap) Push(x any)        { *h = append(*h, x.(uint64)) }
func (h *keyHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// push adds k; window is the live set, used to drop stale keys.
func (h *keyHeap) push(k uint64, window map[uint64][]byte) {
	if len(*h) > 2*len(window)+64 {
		*h = (*h)[:0]
		for wk := range window {
			*h = append(*h, wk)
		}
		heap.Init(h)
		return // window already holds k
	}
	heap.Push(h, k)
}

// max returns the largest key still in window.
func (h *keyHeap) max(window map[uint64][]byte) (uint64, bool) {
	for len(*h) > 0 {
		if _, live := window[(*h)[0]]; live {
			return (*h)[0], true
		}
		heap.Pop(h)
	}
	return 0, false
}

// orderCheck tracks whether clusters arrive in device order: every cluster
// of the lowest device ascending, then the next device, and so on.
type orderCheck struct {
	dev      int
	num      uint32
	started  bool
	disorder bool
}

func (o *orderCheck) see(dev int, num uint32) {
	if o.started && (dev < o.dev || (dev == o.dev && num <= o.num)) {
		o.disorder = true
	}
	o.dev, o.num, o.started = dev, num, true
}

func (o *orderCheck) inOrder() bool { return !o.disorder }

// IsOptimized reads the index of the archive in f (headers only, seeking
// over the data) and reports whether it is in Optimize's form: it carries
// OptimizedUUID and stores its clusters in device order. f is left at
// its start.
func IsOptimized(f io.ReadSeeker, size int64) (bool, error) {
	defer f.Seek(0, io.SeekStart)
	vr, err := NewIndexReader(f, size)
	if err != nil {
		return false, err
	}
	if vr.Header().UUID != OptimizedUUID {
		return false, nil
	}
	var order orderCheck
	for {
		c, err := vr.Next()
		if err == io.EOF {
			return order.inOrder(), nil
		}
		if err != nil {
			return false, err
		}
		if order.see(c.DevID, c.Num); !order.inOrder() {
			return false, nil
		}
	}
}
