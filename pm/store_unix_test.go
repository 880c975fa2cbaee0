//go:build unix

package pm

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/mptcpd/mptcpd/genl"
)

func TestFileStoreJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "owned.json")
	s := &FileStore{Path: path}
	defer s.Close()
	rec := func(id uint8, addr string) OwnedEndpoint {
		return OwnedEndpoint{ID: id, Addr: netip.MustParseAddr(addr)}
	}

	// Nothing saved yet: there is nothing to journal after.
	if err := s.Add(rec(1, "192.0.2.1")); err == nil {
		t.Fatal("Add before any Save succeeded, want an error (a save is due)")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Add created the file (%v)", err)
	}

	base := Ownership{Endpoints: []OwnedEndpoint{rec(1, "192.0.2.1")}, LimitsBefore: &genl.Limits{Subflows: 2}}
	if err := s.Save(base); err != nil {
		t.Fatal(err)
	}
	for _, r := range []OwnedEndpoint{rec(2, "192.0.2.2"), rec(3, "2001:db8::3"), rec(3, "2001:db8::3"), rec(5, "192.0.2.5")} {
		if err := s.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Remove(rec(5, "192.0.2.5")); err != nil {
		t.Fatal(err)
	}
	want := []OwnedEndpoint{rec(1, "192.0.2.1"), rec(2, "192.0.2.2"), rec(3, "2001:db8::3")}
	// Another FileStore on the file, as a restarted daemon's.
	got, err := (&FileStore{Path: path}).Load()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Endpoints, want) || got.LimitsBefore == nil || got.LimitsBefore.Subflows != 2 {
		t.Errorf("Load after the journal = %+v, want endpoints %v and the limits found", got, want)
	}

	// A save replaces the journal, and later changes go to the new file.
	if err := s.Save(Ownership{Endpoints: want[:2]}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(rec(4, "192.0.2.4")); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(rec(1, "192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	got, err = s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if want := []OwnedEndpoint{rec(2, "192.0.2.2"), rec(4, "192.0.2.4")}; !slices.Equal(got.Endpoints, want) {
		t.Errorf("Load after a save and two changes = %v, want %v", got.Endpoints, want)
	}

	// The journal is bounded: once full, it asks for a save, which empties
	// it.
	for i := 0; ; i++ {
		if i > journalRoom/10 {
			t.Fatalf("the journal took %d changes, want at most %d", i, journalRoom/10)
		}
		if err := s.Remove(rec(9, "192.0.2.9")); err != nil {
			break
		}
	}
	if err := s.Save(got); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(rec(6, "192.0.2.6")); err != nil {
		t.Errorf("Add after the save that emptied the journal = %v", err)
	}
	if _, err := os.Stat(path + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary file is left behind (%v)", err)
	}
	// Without changes, the file is the records and whitespace: JSON.
	if err := s.Save(Ownership{Endpoints: want[:1]}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var plain Ownership
	if err := json.Unmarshal(b, &plain); err != nil || !slices.Equal(plain.Endpoints, want[:1]) {
		t.Errorf("the saved file read as plain JSON: %+v, %v; want the records", plain, err)
	}
}

// TestFileStoreShortened: a file shortened under the journal's mapping
// makes the journal refuse the change (the caller then saves), not crash
// the daemon.
func TestFileStoreShortened(t *testing.T) {
	path := filepath.Join(t.TempDir(), "owned.json")
	s := &FileStore{Path: path}
	defer s.Close()
	if err := s.Save(Ownership{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(OwnedEndpoint{ID: 1, Addr: netip.MustParseAddr("192.0.2.1")}); err == nil {
		t.Error("Add into a shortened file succeeded, want an error")
	}
	// A save makes it whole again.
	if err := s.Save(Ownership{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(OwnedEndpoint{ID: 1, Addr: netip.MustParseAddr("192.0.2.1")}); err != nil {
		t.Errorf("Add after a save: %v", err)
	}
}
