//go:build unix

package pm

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// journalMap is a saved file, mapped into memory, and where the next
// change goes in the room after the records.
type journalMap struct {
	f   *os.File
	mem []byte
	off int
}

// mapJournal maps the file f, size bytes long, whose room for changes
// starts at off. It takes f, even when it fails.
func mapJournal(f *os.File, off, size int) (*journalMap, error) {
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("mapping ownership records: %w", err)
	}
	// Fault the room's pages in now, writable, so that a change later
	// costs no page fault: a store of what is there.
	page := os.Getpagesize()
	for i := off &^ (page - 1); i < size; i += page {
		j := max(i, off)
		b := mem[j]
		mem[j] = b
	}
	return &journalMap{f: f, mem: mem, off: off}, nil
}

// errJournalFault says the mapped file was shortened under the mapping.
var errJournalFault = errors.New("the file of ownership records was shortened")

// add writes a line into the room, byte after byte in order, so that a
// kill -9 leaves a prefix of it, which Load recognises as cut short.
func (j *journalMap) add(line []byte) (err error) {
	if j.off+len(line) > len(j.mem) {
		return errJournalFull
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if recover() != nil {
			err = errJournalFault
		}
	}()
	for i, c := range line {
		j.mem[j.off+i] = c
	}
	j.off += len(line)
	return nil
}

func (j *journalMap) close() error {
	return errors.Join(unix.Munmap(j.mem), j.f.Close())
}
