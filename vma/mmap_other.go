//go:build !unix

package vma

import (
	"errors"
	"os"
)

var errFault = errors.New("input fault")

type mapper struct{}

func newMapper(f *os.File, size int64) *mapper { return &mapper{} }

func (m *mapper) bytes(off, n int64) []byte { return nil }

func (m *mapper) close() {}

func guardFaults(fn func() error) error { return fn() }
