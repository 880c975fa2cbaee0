//go:build !unix

package pm

import (
	"errors"
	"os"
)

// journalMap is not available: each change costs a save.
type journalMap struct{}

func mapJournal(f *os.File, off, size int) (*journalMap, error) {
	_ = f.Close()
	return nil, errors.ErrUnsupported
}

func (*journalMap) add([]byte) error { return errors.ErrUnsupported }
func (*journalMap) close() error     { return nil }
