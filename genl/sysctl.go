package genl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/mptcpd/mptcpd/netns"
)

// SysctlDir holds the per-namespace MPTCP sysctls.
const SysctlDir = "/proc/sys/net/mptcp"

// Path manager names as net.mptcp.path_manager spells them.
const (
	PathManagerKernel    = "kernel"
	PathManagerUserspace = "userspace"
)

// Capabilities is what the running kernel offers in one network namespace.
type Capabilities struct {
	// Family reports whether the mptcp_pm generic-netlink family exists,
	// FamilyVersion its version, and EventsGroup whether its events group does.
	Family        bool
	FamilyVersion uint8
	EventsGroup   bool
	// Sysctls reports whether /proc/sys/net/mptcp exists in the namespace.
	Sysctls bool
	// Enabled is net.mptcp.enabled: whether MPTCP sockets can be created.
	Enabled bool
	// PathManagers are the path managers the kernel has, and PathManager the
	// one selected for new connections.
	PathManagers []string
	PathManager  string
}

// Supports reports whether the kernel has the named path manager.
func (c Capabilities) Supports(pm string) bool { return slices.Contains(c.PathManagers, pm) }

// Probe reports what the kernel offers in the caller's namespace or the one
// given with WithNetNS. A kernel without MPTCP is not an error: the
// Capabilities say so.
func Probe(opts ...Option) (Capabilities, error) {
	var caps Capabilities
	c, err := New(opts...)
	switch {
	case errors.Is(err, ErrUnavailable):
	case err != nil:
		return caps, fmt.Errorf("probing the mptcp_pm family: %w", err)
	default:
		f := c.Family()
		caps.Family, caps.FamilyVersion, caps.EventsGroup = true, f.Version, c.events != 0
		_ = c.Close()
	}

	o := buildOptions(opts)
	vals, err := readSysctls(o.netNS, "enabled", "path_manager", "available_path_managers", "pm_type")
	if err != nil {
		return caps, err
	}
	if _, ok := vals["enabled"]; !ok {
		return caps, nil // no MPTCP sysctls: no MPTCP in this kernel
	}
	caps.Sysctls = true
	caps.Enabled = vals["enabled"] == "1"
	caps.PathManager, caps.PathManagers = pathManagerOf(vals)
	return caps, nil
}

// pathManagerOf reads the selected and available path managers from the
// sysctls, falling back to pm_type (Linux 5.19 to 6.14) where path_manager
// does not exist.
func pathManagerOf(vals map[string]string) (selected string, available []string) {
	if pm, ok := vals["path_manager"]; ok {
		return pm, strings.Fields(vals["available_path_managers"])
	}
	if t, ok := vals["pm_type"]; ok {
		available = []string{PathManagerKernel, PathManagerUserspace}
		if t == "1" {
			return PathManagerUserspace, available
		}
		return PathManagerKernel, available
	}
	// Before Linux 5.19 there is only the in-kernel path manager.
	return PathManagerKernel, []string{PathManagerKernel}
}

// ReadSysctl returns the value of net.mptcp.NAME in the caller's namespace or
// the one given with WithNetNS, without the trailing newline.
func ReadSysctl(name string, opts ...Option) (string, error) {
	if err := validSysctlName(name); err != nil {
		return "", err
	}
	vals, err := readSysctls(buildOptions(opts).netNS, name)
	if err != nil {
		return "", err
	}
	v, ok := vals[name]
	if !ok {
		return "", fmt.Errorf("sysctl net.mptcp.%s does not exist in this kernel: %w", name, os.ErrNotExist)
	}
	return v, nil
}

// WriteSysctl sets net.mptcp.NAME to value in the caller's namespace or the
// one given with WithNetNS. Needs CAP_NET_ADMIN.
func WriteSysctl(name, value string, opts ...Option) error {
	if err := validSysctlName(name); err != nil {
		return err
	}
	if value == "" || strings.ContainsAny(value, "\n\x00") {
		return fmt.Errorf("%w: value %q for net.mptcp.%s must be one line and not empty", ErrInvalid, value, name)
	}
	return netns.Do(buildOptions(opts).netNS, func() error {
		if err := os.WriteFile(filepath.Join(SysctlDir, name), []byte(value), 0); err != nil {
			return fmt.Errorf("setting net.mptcp.%s to %q: %w", name, value, err)
		}
		return nil
	})
}

// PathManager returns the path manager selected for new connections.
func PathManager(opts ...Option) (string, error) {
	vals, err := readSysctls(buildOptions(opts).netNS, "path_manager", "available_path_managers", "pm_type", "enabled")
	if err != nil {
		return "", err
	}
	if _, ok := vals["enabled"]; !ok {
		return "", fmt.Errorf("no %s in this namespace: %w", SysctlDir, ErrUnavailable)
	}
	pm, _ := pathManagerOf(vals)
	return pm, nil
}

// SetPathManager selects the path manager for new connections ("kernel" or
// "userspace"); existing connections keep theirs. It writes path_manager,
// or pm_type on kernels without it.
func SetPathManager(pm string, opts ...Option) error {
	o := buildOptions(opts)
	vals, err := readSysctls(o.netNS, "path_manager", "available_path_managers", "pm_type", "enabled")
	if err != nil {
		return err
	}
	_, available := pathManagerOf(vals)
	if !slices.Contains(available, pm) {
		return fmt.Errorf("%w: path manager %q is not one this kernel has (%s)", ErrInvalid, pm, strings.Join(available, ", "))
	}
	if _, ok := vals["path_manager"]; ok {
		return WriteSysctl("path_manager", pm, opts...)
	}
	if _, ok := vals["pm_type"]; !ok {
		return nil // only the in-kernel path manager exists, and it is selected
	}
	t := "0"
	if pm == PathManagerUserspace {
		t = "1"
	}
	return WriteSysctl("pm_type", t, opts...)
}

// Enabled reports net.mptcp.enabled.
func Enabled(opts ...Option) (bool, error) {
	v, err := ReadSysctl("enabled", opts...)
	if err != nil {
		return false, err
	}
	return v == "1", nil
}

// SetEnabled sets net.mptcp.enabled.
func SetEnabled(on bool, opts ...Option) error {
	return WriteSysctl("enabled", strconv.Itoa(btoi(on)), opts...)
}

func validSysctlName(name string) error {
	if name == "" || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
		return fmt.Errorf("%w: sysctl name %q: want lower-case letters, digits and '_' (e.g. path_manager)", ErrInvalid, name)
	}
	return nil
}

// readSysctls reads the named sysctls inside the namespace; names that do not
// exist are left out of the map.
func readSysctls(fd int, names ...string) (map[string]string, error) {
	vals := make(map[string]string, len(names))
	err := netns.Do(fd, func() error {
		for _, name := range names {
			b, err := os.ReadFile(filepath.Join(SysctlDir, name))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("reading net.mptcp.%s: %w", name, err)
			}
			vals[name] = strings.TrimSpace(string(b))
		}
		return nil
	})
	return vals, err
}
