package fallback

import (
	"net/netip"
	"slices"

	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/mpx"
	"github.com/mptcpd/mptcpd/pm"
)

// IDs gives addresses stable identifiers, 1–255, as the kernel gives
// endpoints theirs: an address keeps its ID while it stays wanted.
type IDs struct {
	byAddr map[netip.AddrPort]uint8
}

// assign returns keys' IDs, freeing those of addresses no longer listed.
func (ids *IDs) assign(keys []netip.AddrPort) []uint8 {
	if ids.byAddr == nil {
		ids.byAddr = make(map[netip.AddrPort]uint8)
	}
	for k := range ids.byAddr {
		if !slices.Contains(keys, k) {
			delete(ids.byAddr, k)
		}
	}
	var used [256]bool
	for _, id := range ids.byAddr {
		used[id] = true
	}
	out := make([]uint8, len(keys))
	for i, k := range keys {
		id, ok := ids.byAddr[k]
		if !ok {
			for n := 1; n < 256; n++ {
				if !used[n] {
					id = uint8(n)
					break
				}
			}
			if id == 0 {
				continue // more than 255 addresses: the rest get none
			}
			used[id] = true
			ids.byAddr[k] = id
		}
		out[i] = id
	}
	return out
}

// Paths turns the endpoints the policy wants into the client's paths:
// those flagged subflow or fullmesh, with their interface, backup and
// fullmesh flags, in the policy's order of preference.
func Paths(wants []pm.Want, ids *IDs) []mpx.Path {
	var keys []netip.AddrPort
	var picked []pm.Want
	for _, w := range wants {
		if w.Flags&(genl.FlagSubflow|genl.FlagFullmesh) == 0 {
			continue
		}
		picked = append(picked, w)
		keys = append(keys, netip.AddrPortFrom(w.Addr, 0))
	}
	got := ids.assign(keys)
	paths := make([]mpx.Path, 0, len(picked))
	for i, w := range picked {
		if got[i] == 0 {
			continue
		}
		paths = append(paths, mpx.Path{
			ID: got[i], Addr: w.Addr, Dev: w.Interface,
			Backup:   w.Flags&genl.FlagBackup != 0,
			Fullmesh: w.Flags&genl.FlagFullmesh != 0,
		})
	}
	return paths
}

// Adverts turns the endpoints flagged signal into the converter's
// advertised addresses, on the endpoint's port or else port.
func Adverts(wants []pm.Want, port uint16, ids *IDs) []mpx.Advert {
	var keys []netip.AddrPort
	var picked []pm.Want
	for _, w := range wants {
		if w.Flags&genl.FlagSignal == 0 {
			continue
		}
		p := w.Port
		if p == 0 {
			p = port
		}
		picked = append(picked, w)
		keys = append(keys, netip.AddrPortFrom(w.Addr, p))
	}
	got := ids.assign(keys)
	var out []mpx.Advert
	for i, w := range picked {
		if got[i] != 0 {
			out = append(out, mpx.Advert{ID: got[i], Addr: keys[i], Backup: w.Flags&genl.FlagBackup != 0})
		}
	}
	return out
}
