package pm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/mptcpd/mptcpd/genl"
)

// OwnedEndpoint is an endpoint the daemon added. The kernel keeps no owner
// tag, so the daemon records its own: an endpoint is ours when the kernel
// has one with the same address, port and ID. A record with ID 0 is an add
// in progress (written before the request, so a crash right after it still
// leaves a record); it matches by address and port.
type OwnedEndpoint struct {
	ID   uint8      `json:"id"`
	Addr netip.Addr `json:"addr"`
	Port uint16     `json:"port,omitempty"`
	// Manual marks an endpoint added on request (the API), which the policy
	// leaves alone; Rule names the policy rule that wanted the others.
	Manual bool   `json:"manual,omitempty"`
	Rule   string `json:"rule,omitempty"`
}

// Matches reports whether the kernel endpoint ep is the one recorded.
func (o OwnedEndpoint) Matches(ep genl.Endpoint) bool {
	return o.Addr == ep.Addr && o.Port == ep.Port && (o.ID == 0 || o.ID == ep.ID)
}

// Ownership is what the daemon owns in one namespace and what it found
// there before it changed anything, so it can put it back.
type Ownership struct {
	Endpoints []OwnedEndpoint `json:"endpoints"`
	// LimitsBefore are the limits found before the daemon first set them;
	// nil while it has not changed them.
	LimitsBefore *genl.Limits `json:"limits_before,omitempty"`
	// PathManagerBefore is the path manager found before the daemon first
	// selected one; empty while it has not.
	PathManagerBefore string `json:"path_manager_before,omitempty"`
}

// Store keeps the Ownership of one namespace across daemon restarts,
// including a kill -9.
type Store interface {
	Load() (Ownership, error)
	Save(Ownership) error
}

// A Journal is a Store that records a single change to the records more
// cheaply than a Save of the whole: an endpoint added to them (written
// before the endpoint is added, so it must be quick) or one removed. Once
// a method returns nil, Load returns the Ownership last saved with the
// changes since applied, after a kill -9 as well. A method that fails may
// have recorded the change or not; the caller then saves the whole, which
// replaces whatever was recorded. The methods may fail until the Journal
// has saved once, and when its room for changes is full.
type Journal interface {
	Add(OwnedEndpoint) error
	Remove(OwnedEndpoint) error
}

// journalRoom is the room a FileStore leaves after the records it saves
// for the changes that follow: some 60 of them, until the next save.
const journalRoom = 4096

// errJournalFull asks for a save.
var errJournalFull = errors.New("the journal of changes is full; save instead")

// FileStore is a Store in a JSON file, replaced atomically on every save.
// Under /run it lives as long as the kernel state it describes: both go
// at reboot. It is a Journal too: each change is a line of JSON after the
// saved object, in room the save left there (spaces, which JSON readers
// skip), and the next save replaces them all. The room is mapped into
// memory, so that a change costs no system call: the mapping is the file's
// page cache, which a kill -9 leaves as it is. A FileStore with Path set is
// ready to use; it is used by pointer, since it keeps the file mapped
// between saves (Close unmaps it). The file belongs to the FileStore while
// it is used: one daemon owns a namespace's records (it holds the
// namespace's lock); a file shortened under the mapping costs a save.
type FileStore struct {
	Path string

	mu sync.Mutex
	// journal is the file as last saved by this FileStore, mapped, with
	// where the next change goes; nil before the first save.
	journal *journalMap
}

// change is a line of the journal.
type change struct {
	OwnedEndpoint
	// Removed is set when the record was removed; else it was added.
	Removed bool `json:"removed,omitempty"`
}

// appendJSON appends the change as a line of the journal: a newline, then
// the JSON that encoding/json makes of it, for an address without a zone.
// It is written by hand because the record of an endpoint is written
// before the endpoint is added, where reflection's time counts.
func (c change) appendJSON(b []byte) []byte {
	b = append(b, "\n{\"id\":"...)
	b = strconv.AppendUint(b, uint64(c.ID), 10)
	b = append(b, `,"addr":"`...)
	b = c.Addr.AppendTo(b) // without a zone, nothing to escape
	b = append(b, '"')
	if c.Port != 0 {
		b = append(b, `,"port":`...)
		b = strconv.AppendUint(b, uint64(c.Port), 10)
	}
	if c.Manual {
		b = append(b, `,"manual":true`...)
	}
	if c.Rule != "" {
		b = append(b, `,"rule":`...)
		b = appendJSONString(b, c.Rule)
	}
	if c.Removed {
		b = append(b, `,"removed":true`...)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string, as encoding/json writes it.
func appendJSONString(b []byte, s string) []byte {
	for _, r := range s {
		if r < 0x20 || r >= 0x7f || r == '"' || r == '\\' || r == '<' || r == '>' || r == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Load reads the file and applies the changes journalled after the saved
// records; a missing file is an empty Ownership.
func (s *FileStore) Load() (Ownership, error) {
	var o Ownership
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, os.ErrNotExist) {
		return o, nil
	}
	if err != nil {
		return o, fmt.Errorf("reading ownership records: %w", err)
	}
	corrupt := func(err error) error {
		return fmt.Errorf("ownership records in %s are corrupt (remove the file to forget them; endpoints it listed will then be treated as foreign): %w", s.Path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&o); err != nil {
		return Ownership{}, corrupt(err)
	}
	for i, line := range bytes.Split(b[dec.InputOffset():], []byte("\n")) {
		c, err := decodeChange(line)
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF):
			// A change cut short (by a kill -9 while it was written): one
			// not made, since an add waits for its record, and a removal
			// comes after it.
		case err != nil:
			return Ownership{}, corrupt(fmt.Errorf("line %d after the records: %w", i+1, err))
		case c == nil:
		case c.Removed:
			o.Endpoints = slices.DeleteFunc(o.Endpoints, func(e OwnedEndpoint) bool { return e == c.OwnedEndpoint })
		default:
			if !slices.Contains(o.Endpoints, c.OwnedEndpoint) {
				o.Endpoints = append(o.Endpoints, c.OwnedEndpoint)
			}
		}
	}
	return o, nil
}

// decodeChange decodes a line of the journal; nil for a blank line.
func decodeChange(line []byte) (*change, error) {
	if len(bytes.TrimSpace(line)) == 0 {
		return nil, nil
	}
	var c change
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	if rest := bytes.TrimSpace(line[dec.InputOffset():]); len(rest) > 0 {
		return nil, fmt.Errorf("%q after the record", rest)
	}
	if !c.Addr.IsValid() || c.ID == 0 {
		return nil, errors.New("a record without an address or an ID")
	}
	return &c, nil
}

// Add journals a record added. It does not fsync, for the reasons Save
// gives.
func (s *FileStore) Add(e OwnedEndpoint) error { return s.note(change{OwnedEndpoint: e}) }

// Remove journals a record removed, as Add journals one added.
func (s *FileStore) Remove(e OwnedEndpoint) error {
	return s.note(change{OwnedEndpoint: e, Removed: true})
}

// note journals a change as a line of its own, which starts with a
// newline, so that one cut short (by a kill -9 while it is written) stays
// apart from the next.
func (s *FileStore) note(c change) error {
	if !c.Addr.IsValid() {
		return errors.New("journalling an ownership record: no address")
	}
	line := c.appendJSON(make([]byte, 0, 80))
	if c.Addr.Zone() != "" {
		// A zone is an interface's name, which may need escaping.
		b, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("encoding an ownership record: %w", err)
		}
		line = append([]byte{'\n'}, b...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.journal == nil {
		return fmt.Errorf("journalling an ownership record: %w", errNotSaved)
	}
	if err := s.journal.add(line); err != nil {
		return fmt.Errorf("journalling an ownership record: %w", err)
	}
	return nil
}

// errNotSaved says a FileStore has no journal before its first save.
var errNotSaved = errors.New("nothing saved yet")

// Close unmaps the file, if mapped; the FileStore may be used again.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeLocked()
}

func (s *FileStore) closeLocked() error {
	if s.journal == nil {
		return nil
	}
	err := s.journal.close()
	s.journal = nil
	if err != nil {
		return fmt.Errorf("closing ownership records: %w", err)
	}
	return nil
}

// Save writes the file atomically: a crash of the daemon leaves the old or
// the new content, never a mix. It does not fsync: the records only
// matter while the kernel state they describe exists, and a power loss or
// kernel crash takes both. The temporary file has a fixed name: one daemon
// owns a namespace's records (it holds the namespace's lock). The new file
// stays open for the journal that follows.
func (s *FileStore) Save(o Ownership) error {
	b, err := json.MarshalIndent(o, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding ownership records: %w", err)
	}
	b = append(b, '\n')
	records := len(b)
	b = append(b, bytes.Repeat([]byte{' '}, journalRoom)...)
	s.mu.Lock()
	defer s.mu.Unlock()
	// The journal goes to the file this save writes, not to the one it
	// replaces.
	_ = s.closeLocked()
	tmp := s.Path + ".new"
	create := func() (*os.File, error) {
		return os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	}
	f, err := create()
	if errors.Is(err, os.ErrNotExist) {
		// The state directory went away (or never was): make it once.
		if err := os.MkdirAll(filepath.Dir(s.Path), 0o755); err != nil {
			return fmt.Errorf("creating the state directory: %w", err)
		}
		f, err = create()
	}
	if err != nil {
		return fmt.Errorf("saving ownership records: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("saving ownership records: %w", err)
	}
	if err := os.Rename(tmp, s.Path); err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("saving ownership records: %w", err)
	}
	// Without a mapping (another OS, or mmap refused), each change costs
	// a save.
	s.journal, _ = mapJournal(f, records, len(b))
	return nil
}
