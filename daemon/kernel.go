package daemon

import (
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/metrics"
)

// kernel is pm.Kernel for one namespace: the genl client for endpoints and
// limits, the namespace's sysctls for the path manager. Failed requests are
// counted in metrics (which may be nil).
type kernel struct {
	*genl.Client
	// fast, if set, is a client of its own for the fast path from a new
	// address to its endpoint (CreateEndpoint, SetLimitsAndCreateEndpoint):
	// a client's requests go one at a time, and a reconcile's DEL_ADDR,
	// which waits for an RCU grace period, must not hold a new address's
	// endpoint up.
	fast    *genl.Client
	nsfd    int
	metrics *metrics.Metrics
}

// fastClient is the client of the fast path.
func (k *kernel) fastClient() *genl.Client {
	if k.fast != nil {
		return k.fast
	}
	return k.Client
}

// count counts err, if any, as a failed netlink request op.
func (k *kernel) count(op string, err error) error {
	if err != nil {
		k.metrics.NetlinkError(op)
	}
	return err
}

func (k *kernel) Endpoints() ([]genl.Endpoint, error) {
	eps, err := k.Client.Endpoints()
	return eps, k.count("get_addr", err)
}

func (k *kernel) AddEndpoint(ep genl.Endpoint) (genl.Endpoint, error) {
	got, err := k.Client.AddEndpoint(ep)
	return got, k.count("add_addr", err)
}

func (k *kernel) CreateEndpoint(ep genl.Endpoint) error {
	return k.count("add_addr", k.fastClient().CreateEndpoint(ep))
}

func (k *kernel) SetLimitsAndCreateEndpoint(l genl.Limits, ep genl.Endpoint) (limitsErr, addErr error) {
	limitsErr, addErr = k.fastClient().SetLimitsAndCreateEndpoint(l, ep)
	return k.count("set_limits", limitsErr), k.count("add_addr", addErr)
}

func (k *kernel) DeleteEndpoint(id uint8) error {
	return k.count("del_addr", k.Client.DeleteEndpoint(id))
}

func (k *kernel) SetEndpointFlags(id uint8, flags genl.EndpointFlags) error {
	return k.count("set_flags", k.Client.SetEndpointFlags(id, flags))
}

func (k *kernel) Limits() (genl.Limits, error) {
	l, err := k.Client.Limits()
	return l, k.count("get_limits", err)
}

func (k *kernel) SetLimits(l genl.Limits) error {
	return k.count("set_limits", k.Client.SetLimits(l))
}

func (k *kernel) PathManager() (string, error) {
	return genl.PathManager(genl.WithNetNS(k.nsfd))
}

func (k *kernel) SetPathManager(pm string) error {
	return genl.SetPathManager(pm, genl.WithNetNS(k.nsfd))
}
