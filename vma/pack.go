package vma

import (
	"fmt"
	"io"
)

// PackDevices writes an archive with header h to w, reading the contents
// of h's devices from images (one per device, in order, exactly the
// device's Size bytes each): devices one after another in cluster order,
// as Proxmox writes them. An image with a Name method (such as *os.File)
// is named by it in errors. progress, if set, is called now and then with
// the image bytes read so far.
func PackDevices(w io.Writer, h *Header, images []io.Reader, progress func(read int64)) error {
	if len(images) != len(h.Devices) {
		return fmt.Errorf("vma: %d images for %d devices", len(images), len(h.Devices))
	}
	vw, err := NewWriter(w, h)
	if err != nil {
		return err
	}
	buf := make([]byte, ClusterSize)
	var read int64
	for i, d := range vw.Header().Devices {
		r := images[i]
		name := d.Name
		if n, ok := r.(interface{ Name() string }); ok {
			name = n.Name()
		}
		for num := uint64(0); num < d.Clusters(); num++ {
			n, err := io.ReadFull(r, buf)
			if err != nil && err != io.ErrUnexpectedEOF {
				return fmt.Errorf("vma: reading %s: %w", name, err)
			}
			if uint64(n) != min(ClusterSize, d.Size-num*ClusterSize) {
				return fmt.Errorf("vma: %s changed size while packing", name)
			}
			if err := vw.WriteCluster(d.ID, uint32(num), buf[:n]); err != nil {
				return err
			}
			read += int64(n)
			if progress != nil && num%64 == 63 {
				progress(read)
			}
		}
	}
	if progress != nil {
		progress(read)
	}
	return vw.Close()
}
