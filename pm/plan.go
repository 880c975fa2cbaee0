package pm

import (
	"log/slog"

	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/netmon"
)

// Plan returns what Reconcile(cfg, st) would do now, changing nothing: the
// same run, against the kernel's current state, with every write to the
// kernel and to the records left undone. Result.Made lists the changes.
func (r *Reconciler) Plan(cfg *config.Config, st netmon.State) (Result, error) {
	r.mu.Lock()
	own, err := r.load()
	deferTo := r.deferTo
	r.mu.Unlock()
	if err != nil {
		return Result{}, err
	}
	dry := &Reconciler{
		kernel:  dryKernel{r.kernel},
		store:   &memStore{own},
		log:     slog.New(slog.DiscardHandler),
		deferTo: deferTo,
	}
	return dry.Reconcile(cfg, st)
}

// dryKernel reads from the kernel and pretends to write.
type dryKernel struct{ Kernel }

func (dryKernel) AddEndpoint(ep genl.Endpoint) (genl.Endpoint, error) { return ep, nil }
func (dryKernel) DeleteEndpoint(uint8) error                          { return nil }
func (dryKernel) SetEndpointFlags(uint8, genl.EndpointFlags) error    { return nil }
func (dryKernel) SetLimits(genl.Limits) error                         { return nil }
func (dryKernel) SetPathManager(string) error                         { return nil }

// memStore keeps records in memory.
type memStore struct{ o Ownership }

func (s *memStore) Load() (Ownership, error) { return s.o, nil }
func (s *memStore) Save(o Ownership) error   { s.o = o; return nil }
