package vmafile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vmasync/vmasync/vma"
)

// PackOptions tunes Pack.
type PackOptions struct {
	// UUID of the new archive; zero means a random one, as vzdump writes.
	UUID vma.UUID
	// CTime of the new archive (seconds since the epoch); zero means now.
	CTime int64
	// Progress, if set, is called now and then with the image bytes read
	// so far.
	Progress func(read int64)
}

// PackLayout is what Pack finds in a directory.
type PackLayout struct {
	// Configs are the config files, qemu-server.conf first, then
	// qemu-server.fw, then the rest by name.
	Configs []string
	// Images maps device names to image paths; Devices is their order.
	Images  map[string]string
	Devices []string
}

// ReadPackLayout lists a directory as Unpack writes it: disk-<name>.raw
// files are device images (vmstate.bin the VM state), other regular files
// not starting with "." are configs. Devices are ordered by name.
func ReadPackLayout(dir string) (*PackLayout, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	l := &PackLayout{Images: map[string]string{}}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			continue
		}
		switch {
		case strings.HasPrefix(name, "disk-") && strings.HasSuffix(name, ".raw") && len(name) > len("disk-.raw"):
			dev := strings.TrimSuffix(strings.TrimPrefix(name, "disk-"), ".raw")
			l.Images[dev] = filepath.Join(dir, name)
			l.Devices = append(l.Devices, dev)
		case name == "vmstate.bin":
			l.Images[vma.VMStateName] = filepath.Join(dir, name)
			l.Devices = append(l.Devices, vma.VMStateName)
		default:
			l.Configs = append(l.Configs, name)
		}
	}
	rank := func(n string) int {
		switch n {
		case "qemu-server.conf":
			return 0
		case "qemu-server.fw":
			return 1
		}
		return 2
	}
	slices.SortStableFunc(l.Configs, func(a, b string) int {
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra - rb
		}
		return strings.Compare(a, b)
	})
	slices.Sort(l.Devices)
	if len(l.Devices) == 0 {
		return nil, fmt.Errorf("vma: %s holds no disk-*.raw image to pack", dir)
	}
	return l, nil
}

// Pack writes an archive of the configs and images in dir (see
// ReadPackLayout) to w with vma.PackDevices: the inverse of Unpack. Image
// sizes need not be multiples of 4 KiB or 64 KiB.
func Pack(dir string, w io.Writer, opt PackOptions) error {
	l, err := ReadPackLayout(dir)
	if err != nil {
		return err
	}
	h := vma.Header{UUID: opt.UUID, CTime: opt.CTime}
	if h.UUID == (vma.UUID{}) {
		h.UUID = vma.RandomUUID()
	}
	if h.CTime == 0 {
		h.CTime = time.Now().Unix()
	}
	for _, name := range l.Configs {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		h.Configs = append(h.Configs, vma.Config{Name: name, Data: data})
	}
	images := make([]io.Reader, len(l.Devices))
	defer func() {
		for _, f := range images {
			if f != nil {
				f.(*os.File).Close()
			}
		}
	}()
	for i, dev := range l.Devices {
		f, err := os.Open(l.Images[dev])
		if err != nil {
			return err
		}
		images[i] = f
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if st.Size() == 0 {
			return fmt.Errorf("vma: %s is empty; a device needs a size above 0", f.Name())
		}
		h.Devices = append(h.Devices, vma.Device{Name: dev, Size: uint64(st.Size())})
	}
	return vma.PackDevices(w, &h, images, opt.Progress)
}
