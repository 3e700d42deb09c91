package vmatest

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"strings"

	"github.com/vmasync/vmasync/vma"
)

// Version returns the generation in which cluster num of disk last got new
// contents: 0 if it is unchanged since generation 0, else a number in
// 1..Generation. Clusters with Version(…) == Generation differ from the
// previous generation; all others are equal to it.
func (s Spec) Version(disk int, num uint64) uint64 {
	f := s.changeFraction()
	if f == 0 {
		return 0
	}
	for g := s.Generation; g >= 1; g-- {
		if unit(hash(s.Seed, saltChg|uint64(disk), num, g)) < f {
			return g
		}
	}
	return 0
}

// cluster kinds
type kind int

const (
	kZero kind = iota
	kRandom
	kText
	kPartial // random, with some zero blocks and a run of zero blocks
	kSparse  // zero but for a few text blocks
)

func (s Spec) kind(disk int, num, version uint64) kind {
	h := hash(s.Seed, saltKind|uint64(disk), num, version)
	if version > 0 {
		return []kind{kRandom, kText, kPartial}[h%3]
	}
	switch s.Disks[disk].Content {
	case Random:
		return kRandom
	case Text:
		return kText
	case Sparse:
		return kSparse
	case Zero:
		return kZero
	case ZeroRuns:
		n := s.clusters(disk)
		if num >= n/4 && num < n-n/4 {
			return kZero
		}
		return []kind{kRandom, kPartial, kText, kZero}[h%4]
	}
	// Mixed: 1 MiB zero runs in one region of 8, then by cluster.
	if hash(s.Seed, saltRun|uint64(disk), num/16, 0)%8 == 0 {
		return kZero
	}
	switch p := h % 100; {
	case p < 35:
		return kRandom
	case p < 55:
		return kText
	case p < 75:
		return kZero
	}
	return kPartial
}

// clusterLen returns how many bytes of the device cluster num covers.
func clusterLen(size, num uint64) int {
	start := num * vma.ClusterSize
	if num >= (size+vma.ClusterSize-1)/vma.ClusterSize {
		return 0
	}
	return int(min(size-start, vma.ClusterSize))
}

// ClusterData returns the contents of cluster num of disk (index into
// Disks): vma.ClusterSize bytes, or the remainder of the disk for the last
// cluster, or nothing for a cluster past the end. It uses buf if it is
// large enough. It is deterministic and fast (a few GB/s for random data)
// and allocates nothing when buf is large enough.
func (s Spec) ClusterData(disk int, num uint64, buf []byte) []byte {
	b, zero := s.cluster(disk, num, buf)
	if zero {
		clear(b)
	}
	return b
}

// cluster returns the cluster in buf, or reports zero = true without
// writing buf (whose contents are then undefined).
func (s Spec) cluster(disk int, num uint64, buf []byte) (b []byte, zero bool) {
	size := s.Disks[disk].Size
	n := clusterLen(size, num)
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	b = buf[:n]
	if n == 0 {
		return b, true
	}
	v := s.Version(disk, num)
	k := s.kind(disk, num, v)
	key := hash(s.Seed, saltData|uint64(disk), num, v)
	switch k {
	case kZero:
		return b, true
	case kRandom:
		fillRandom(b, key)
	case kText:
		fillText(b, key)
	case kPartial:
		fillRandom(b, key)
		// About a quarter of the blocks zero, plus a run of zero blocks.
		h := hash(key, 1, 0, 0)
		for i := range vma.BlocksPerCluster {
			if (h>>(2*i))&3 == 0 {
				clear(b[min(i*vma.BlockSize, n):min((i+1)*vma.BlockSize, n)])
			}
		}
		h2 := hash(key, 2, 0, 0)
		a := int(h2 % 16)
		e := min(16, a+1+int(h2>>8%8))
		clear(b[min(a*vma.BlockSize, n):min(e*vma.BlockSize, n)])
	case kSparse:
		blocks := (n + vma.BlockSize - 1) / vma.BlockSize
		var set []int
		if num == 0 {
			set = append(set, 0)
		}
		if num == s.clusters(disk)-1 {
			set = append(set, blocks-1)
		}
		if num != 0 && key%1024 == 0 {
			set = append(set, int(key>>8)%blocks)
		}
		if len(set) == 0 {
			return b, true
		}
		clear(b)
		for j, i := range set {
			fillText(b[i*vma.BlockSize:min((i+1)*vma.BlockSize, n)], hash(key, 3, uint64(j), 0))
		}
	}
	return b, false
}

func fillRandom(b []byte, key uint64) {
	var seed [32]byte
	for i := range 4 {
		binary.LittleEndian.PutUint64(seed[8*i:], hash(key, uint64(i), 0x5eed, 0))
	}
	var c rand.ChaCha8
	c.Seed(seed)
	c.Read(b)
}

var words = strings.Fields(`the of and to in is that for it as was with be by on not
he this are or his from at which but have an they you were her she there been
one all we their has would when if so no will more can out up about who them
disk backup cluster block archive volume extent header proxmox qemu`)

// fillText fills b with lines of words.
func fillText(b []byte, key uint64) {
	p := rand.NewPCG(key, 0x7e47)
	i, col := 0, 0
	for i < len(b) {
		r := p.Uint64()
		for k := 0; k < 9 && i < len(b); k++ {
			w := words[(r>>(6*k))&63%uint64(len(words))]
			i += copy(b[i:], w)
			col += len(w) + 1
			if i < len(b) {
				if col > 60+int(r>>58) {
					b[i] = '\n'
					col = 0
				} else {
					b[i] = ' '
				}
				i++
			}
		}
	}
}

// WriteImage writes the raw image of disk (index into Disks).
func (s Spec) WriteImage(w io.Writer, disk int) error {
	buf := make([]byte, vma.ClusterSize)
	for num := range s.clusters(disk) {
		if _, err := w.Write(s.ClusterData(disk, num, buf)); err != nil {
			return err
		}
	}
	return nil
}
