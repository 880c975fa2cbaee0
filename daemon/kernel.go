package daemon

import (
	"github.com/mptcpd/mptcpd/genl"
)

// kernel is pm.Kernel for one namespace: the genl client for endpoints and
// limits, the namespace's sysctls for the path manager.
type kernel struct {
	*genl.Client
	nsfd int
}

func (k kernel) PathManager() (string, error) {
	return genl.PathManager(genl.WithNetNS(k.nsfd))
}

func (k kernel) SetPathManager(pm string) error {
	return genl.SetPathManager(pm, genl.WithNetNS(k.nsfd))
}
