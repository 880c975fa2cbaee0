package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mptcpd/mptcpd/netns"
)

// nsInode returns the inode of the network namespace open at fd (0: the
// daemon's own), which names it for the lock and the ownership records.
func nsInode(fd int) (uint64, error) {
	var st unix.Stat_t
	var err error
	if fd == 0 {
		err = unix.Stat("/proc/self/ns/net", &st)
	} else {
		err = unix.Fstat(fd, &st)
	}
	if err != nil {
		return 0, fmt.Errorf("identifying the network namespace: %w", err)
	}
	return st.Ino, nil
}

// lockNamespace takes an exclusive lock that says "an mptcpd manages this
// namespace". The lock is released when the process dies, however it dies.
func lockNamespace(dir string, inode uint64, nsName string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the state directory: %w", err)
	}
	path := filepath.Join(dir, fmt.Sprintf("netns-%d.lock", inode))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the namespace lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(path)
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another mptcpd (pid %s) already manages %s; stop it first (systemctl stop mptcpd) or give this one another namespace with --netns",
				strings.TrimSpace(string(pid)), nsName)
		}
		return nil, fmt.Errorf("locking the namespace: %w", err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// otherPathManagers lists processes of other MPTCP path-manager daemons
// in the network namespace netID names (see netIdentity): the mptcpd C
// daemon, which Debian ships as /usr/libexec/mptcpd and a build from
// source installs under another prefix's libexec.
func otherPathManagers(netID uint64) []string {
	return processesIn(netID, "mptcpd", isCDaemon)
}

// isCDaemon reports whether exe, a process's executable as /proc shows it,
// is the mptcpd C daemon: a file named mptcpd in a libexec directory (the
// kernel adds " (deleted)" when a package upgrade has replaced it).
func isCDaemon(exe string) bool {
	exe = strings.TrimSuffix(exe, " (deleted)")
	return filepath.Base(exe) == "mptcpd" && filepath.Base(filepath.Dir(exe)) == "libexec"
}

// networkManagerIn reports whether NetworkManager runs in the network
// namespace netID names (see netIdentity).
func networkManagerIn(netID uint64) bool {
	return len(processesIn(netID, "NetworkManager", nil)) > 0
}

// netIdentity names the network namespace open at fd (0: the daemon's own)
// by the inode of its /proc/…/net/dev. Unlike /proc/PID/ns/net, which
// only a process allowed to trace PID may read, /proc/PID/net is readable
// by anyone, so the daemon can tell which namespace other processes run in
// when it runs as an unprivileged user, as its unit makes it.
func netIdentity(fd int) (uint64, error) {
	var st unix.Stat_t
	err := netns.Do(fd, func() error { return unix.Stat("/proc/thread-self/net/dev", &st) })
	if err != nil {
		return 0, fmt.Errorf("identifying the network namespace: %w", err)
	}
	return st.Ino, nil
}

// netIdentityOf is netIdentity for the namespace process pid runs in.
func netIdentityOf(pid int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/net/dev", pid), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// processesIn lists processes named comm (and, if exeOK is set, whose
// executable it accepts) in the network namespace netID names, as "exe
// (pid N)". A process whose executable the daemon may not read (another
// user's, when the daemon runs unprivileged, as its unit makes it) is
// listed by its name alone: it is another daemon in the same namespace
// either way.
func processesIn(netID uint64, comm string, exeOK func(string) bool) []string {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := strconv.Itoa(os.Getpid())
	var found []string
	for _, e := range entries {
		pid := e.Name()
		if pid == self || pid[0] < '0' || pid[0] > '9' {
			continue
		}
		c, err := os.ReadFile(filepath.Join("/proc", pid, "comm"))
		if err != nil || !bytes.Equal(bytes.TrimSpace(c), []byte(comm)) {
			continue
		}
		n, err := strconv.Atoi(pid)
		if err != nil {
			continue
		}
		if id, err := netIdentityOf(n); err != nil || id != netID {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", pid, "exe"))
		switch {
		case errors.Is(err, os.ErrPermission):
			found = append(found, fmt.Sprintf("%s (pid %s, run by another user)", comm, pid))
		case err != nil:
			// It has ended.
		case exeOK == nil || exeOK(exe):
			found = append(found, fmt.Sprintf("%s (pid %s)", exe, pid))
		}
	}
	return found
}
