package netns

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on an operating-system thread that has entered the network
// namespace open at fd; fd 0 runs fn directly. Sockets and /proc/sys/net
// files opened inside fn belong to that namespace and stay there afterwards.
// fn must not start goroutines that expect to be in the namespace.
//
// The thread is discarded when fn returns, never handed back to the Go
// scheduler, so no other goroutine ever runs in a namespace it did not ask for.
func Do(fd int, fn func() error) error {
	if fd == 0 {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		// No UnlockOSThread: the runtime ends a locked thread when its
		// goroutine exits.
		runtime.LockOSThread()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering network namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
