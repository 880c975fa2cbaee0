//go:build unix

package main

import (
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// fileGroup names the group that owns path: its name, or "gid N" when the
// host does not know it; "" when path cannot be read, or when its mode
// grants its group nothing (only its owner may use it).
func fileGroup(path string) string {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o070 == 0 {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	gid := strconv.FormatUint(uint64(st.Gid), 10)
	if g, err := user.LookupGroupId(gid); err == nil {
		return g.Name
	}
	return "gid " + gid
}
