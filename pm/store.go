package pm

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

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

// FileStore is a Store in a JSON file, replaced atomically on every save.
// Under /run it lives as long as the kernel state it describes: both go
// at reboot.
type FileStore struct {
	Path string
}

// Load reads the file; a missing file is an empty Ownership.
func (s FileStore) Load() (Ownership, error) {
	var o Ownership
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, os.ErrNotExist) {
		return o, nil
	}
	if err != nil {
		return o, fmt.Errorf("reading ownership records: %w", err)
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return Ownership{}, fmt.Errorf("ownership records in %s are corrupt (remove the file to forget them; endpoints it listed will then be treated as foreign): %w", s.Path, err)
	}
	return o, nil
}

// Save writes the file atomically: a crash of the daemon leaves the old or
// the new content, never a mix. It does not fsync: the records only
// matter while the kernel state they describe exists, and a power loss or
// kernel crash takes both. The temporary file has a fixed name: one daemon
// owns a namespace's records (it holds the namespace's lock).
func (s FileStore) Save(o Ownership) error {
	b, err := json.MarshalIndent(o, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding ownership records: %w", err)
	}
	tmp := s.Path + ".new"
	err = os.WriteFile(tmp, append(b, '\n'), 0o644)
	if errors.Is(err, os.ErrNotExist) {
		// The state directory went away (or never was): make it once.
		if err := os.MkdirAll(filepath.Dir(s.Path), 0o755); err != nil {
			return fmt.Errorf("creating the state directory: %w", err)
		}
		err = os.WriteFile(tmp, append(b, '\n'), 0o644)
	}
	if err != nil {
		return fmt.Errorf("saving ownership records: %w", err)
	}
	if err := os.Rename(tmp, s.Path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("saving ownership records: %w", err)
	}
	return nil
}
