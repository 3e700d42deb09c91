package vma

// This file holds what remote's tests still call from before the file work
// moved to internal/vmafile (issue 14). Delete it, and with it vma's
// import of internal/decompress, once remote/remote_test.go calls
// vmafile.Optimize (with an internal/input Input) and vmafile.Pack, with
// internal/vmafile/deprecated_test.go.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vmasync/vmasync/internal/decompress"
)

// OptimizeFileOptions tunes OptimizeFile.
//
// Deprecated: see OptimizeFile.
type OptimizeFileOptions struct {
	OptimizeOptions
	// Force is accepted and ignored (OptimizeFile never works in place).
	Force bool
	// Stdout receives the output.
	Stdout io.Writer
}

// OptimizeFileResult reports what OptimizeFile did.
//
// Deprecated: see OptimizeFile.
type OptimizeFileResult struct {
	*OptimizeResult
	// Output is "-".
	Output string
	// InputFormat is the compression the input was stored with.
	InputFormat decompress.Format
}

// OptimizeFile optimizes the archive at src (plain or compressed) to
// opt.Stdout; dst must be "-".
//
// Deprecated: use internal/vmafile.Optimize with an input from
// internal/input.
func OptimizeFile(src, dst string, opt OptimizeFileOptions) (*OptimizeFileResult, error) {
	if dst != "-" || opt.Stdout == nil {
		return nil, errors.New("vma: OptimizeFile writes only to Stdout (dst \"-\"); use internal/vmafile")
	}
	in, err := decompress.Open(src)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	var r io.Reader = in
	if in.File != nil {
		r = in.File
	}
	res, err := Optimize(context.Background(), opt.Stdout, r, opt.OptimizeOptions)
	if err != nil {
		return nil, err
	}
	return &OptimizeFileResult{OptimizeResult: res, Output: "-", InputFormat: in.Format}, nil
}

// PackOptions tunes Pack.
//
// Deprecated: see Pack.
type PackOptions struct {
	UUID     UUID
	CTime    int64
	Progress func(read int64)
}

// Pack writes an archive of the configs (qemu-server.conf first, then
// qemu-server.fw, then by name) and the disk-<name>.raw images (devices by
// name) in dir to w.
//
// Deprecated: use internal/vmafile.Pack.
func Pack(dir string, w io.Writer, opt PackOptions) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	h := Header{UUID: opt.UUID, CTime: opt.CTime}
	if h.UUID == (UUID{}) {
		h.UUID = RandomUUID()
	}
	if h.CTime == 0 {
		h.CTime = time.Now().Unix()
	}
	var images []io.Reader
	defer func() {
		for _, f := range images {
			f.(*os.File).Close()
		}
	}()
	paths := map[string]string{} // device name → image
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			continue
		}
		dev, isImage := strings.CutPrefix(name, "disk-")
		dev, isRaw := strings.CutSuffix(dev, ".raw")
		if name == "vmstate.bin" {
			dev, isImage, isRaw = VMStateName, true, true
		}
		if isImage && isRaw && dev != "" {
			paths[dev] = filepath.Join(dir, name)
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		h.Configs = append(h.Configs, Config{Name: name, Data: data})
	}
	rank := map[string]int{"qemu-server.conf": 1, "qemu-server.fw": 2} // others 0, last
	slices.SortStableFunc(h.Configs, func(a, b Config) int {
		return (rank[a.Name]+2)%3 - (rank[b.Name]+2)%3
	})
	devs := slices.Sorted(maps.Keys(paths))
	if len(devs) == 0 {
		return fmt.Errorf("vma: %s holds no disk-*.raw image to pack", dir)
	}
	for _, dev := range devs {
		f, err := os.Open(paths[dev])
		if err != nil {
			return err
		}
		images = append(images, f)
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if st.Size() == 0 {
			return fmt.Errorf("vma: %s is empty; a device needs a size above 0", f.Name())
		}
		h.Devices = append(h.Devices, Device{Name: dev, Size: uint64(st.Size())})
	}
	return PackDevices(w, &h, images, opt.Progress)
}
