package api

import (
	"net/netip"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/events"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/netmon"
	"github.com/mptcpd/mptcpd/pm"
	pb "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// flagBits pairs each API flag with the kernel's bit.
var flagBits = [...]struct {
	pb   pb.EndpointFlag
	flag genl.EndpointFlags
}{
	{pb.EndpointFlag_ENDPOINT_FLAG_SIGNAL, genl.FlagSignal},
	{pb.EndpointFlag_ENDPOINT_FLAG_SUBFLOW, genl.FlagSubflow},
	{pb.EndpointFlag_ENDPOINT_FLAG_BACKUP, genl.FlagBackup},
	{pb.EndpointFlag_ENDPOINT_FLAG_FULLMESH, genl.FlagFullmesh},
	{pb.EndpointFlag_ENDPOINT_FLAG_IMPLICIT, genl.FlagImplicit},
	{pb.EndpointFlag_ENDPOINT_FLAG_LAMINAR, genl.FlagLaminar},
}

func flagsToPB(f genl.EndpointFlags) []pb.EndpointFlag {
	var out []pb.EndpointFlag
	for _, b := range flagBits {
		if f&b.flag != 0 {
			out = append(out, b.pb)
		}
	}
	return out
}

// flagsFromPB converts request flags; field names the request field.
func flagsFromPB(field string, flags []pb.EndpointFlag) (genl.EndpointFlags, error) {
	var f genl.EndpointFlags
	for i, pf := range flags {
		found := false
		for _, b := range flagBits {
			if b.pb == pf {
				f |= b.flag
				found = true
			}
		}
		if !found {
			return 0, invalid(field+"["+strconv.Itoa(i)+"]", "unknown flag %d (want SIGNAL, SUBFLOW, BACKUP, FULLMESH or LAMINAR)", int32(pf))
		}
	}
	return f, nil
}

func ownerToPB(o pm.Owner) pb.Owner {
	switch o {
	case pm.OwnerPolicy:
		return pb.Owner_OWNER_POLICY
	case pm.OwnerManual:
		return pb.Owner_OWNER_API
	case pm.OwnerForeign:
		return pb.Owner_OWNER_FOREIGN
	}
	return pb.Owner_OWNER_UNSPECIFIED
}

func (s *Server) endpointToPB(info pm.EndpointInfo) *pb.Endpoint {
	return &pb.Endpoint{
		Id:             uint32(info.ID),
		Address:        info.Addr.String(),
		Port:           uint32(info.Port),
		Flags:          flagsToPB(info.Flags),
		InterfaceIndex: uint32(info.IfIndex),
		InterfaceName:  s.ifName(int(info.IfIndex)),
		Owner:          ownerToPB(info.Owner),
		Rule:           info.Rule,
	}
}

func (s *Server) ifName(index int) string {
	if index == 0 {
		return ""
	}
	return s.backend.InterfaceName(index)
}

func limitsToPB(l genl.Limits) *pb.Limits {
	return &pb.Limits{Subflows: l.Subflows, AddAddrAccepted: l.AddAddrAccepted}
}

func (s *Server) planToPB(res pm.Result) *pb.Plan {
	p := &pb.Plan{LimitsBefore: limitsToPB(res.LimitsBefore), LimitsAfter: limitsToPB(res.Limits)}
	for _, c := range res.Made {
		var action pb.ChangeAction
		switch c.Action {
		case pm.ActionAdd:
			action = pb.ChangeAction_CHANGE_ACTION_ADD
		case pm.ActionRemove:
			action = pb.ChangeAction_CHANGE_ACTION_REMOVE
		case pm.ActionUpdate:
			action = pb.ChangeAction_CHANGE_ACTION_UPDATE
		default:
			continue // limits are in limits_before/after
		}
		ep := s.endpointToPB(pm.EndpointInfo{Endpoint: c.Endpoint, Owner: pm.OwnerPolicy, Rule: c.Rule})
		if c.Interface != "" {
			ep.InterfaceName = c.Interface
		}
		p.Changes = append(p.Changes, &pb.EndpointChange{Action: action, Endpoint: ep, Reason: c.Reason})
	}
	for _, sk := range res.Skipped {
		p.Skipped = append(p.Skipped, &pb.SkippedAddress{Address: sk.Addr.String(), InterfaceName: sk.Interface, Reason: sk.Reason})
	}
	return p
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.Unmap().String()
}

func (s *Server) connectionToPB(c diag.Connection) *pb.Connection {
	out := &pb.Connection{
		Token:              c.Token,
		LocalAddress:       addrString(c.Local.Addr()),
		LocalPort:          uint32(c.Local.Port()),
		RemoteAddress:      addrString(c.Remote.Addr()),
		RemotePort:         uint32(c.Remote.Port()),
		State:              stateName(c.State),
		Fallback:           c.Fallback,
		AddAddrSignal:      uint32(c.Info.AddAddrSignal),
		AddAddrAccepted:    uint32(c.Info.AddAddrAccepted),
		LocalAddrUsed:      uint32(c.Info.LocalAddrUsed),
		BytesSent:          c.Info.BytesSent,
		BytesReceived:      c.Info.BytesReceived,
		BytesAcked:         c.Info.BytesAcked,
		BytesRetransmitted: c.Info.BytesRetrans,
		Uid:                c.UID,
		Inode:              uint64(c.Inode),
		Datapath:           pb.Datapath_DATAPATH_KERNEL,
	}
	if c.MPX != nil {
		out.Datapath = pb.Datapath_DATAPATH_MPX
		out.MpxToken, out.Destination, out.ConverterSide = c.MPX.Token, c.MPX.Destination, c.MPX.Converter
	}
	if info, ok := s.backend.ConnectionPolicy(c.Token); ok {
		out.Rule, out.Strategy, out.SubflowsWanted, out.ServerSide = info.Rule, info.Strategy, uint32(info.Wanted), info.Server
		out.AnnouncementsAccepted, out.AnnouncementsRefused = uint32(info.Accepted), uint32(info.Refused)
	}
	if len(c.Subflows) > 0 {
		out.Subflows = make([]*pb.Subflow, len(c.Subflows))
		for i, sf := range c.Subflows {
			out.Subflows[i] = &pb.Subflow{
				LocalAddress:  addrString(sf.Local.Addr()),
				LocalPort:     uint32(sf.Local.Port()),
				RemoteAddress: addrString(sf.Remote.Addr()),
				RemotePort:    uint32(sf.Remote.Port()),
				LocalId:       uint32(sf.LocalID),
				RemoteId:      uint32(sf.RemoteID),
				Backup:        sf.BackupLocal,
				RemoteBackup:  sf.BackupRemote,
				State:         stateName(sf.State),
				Rtt:           durationpb.New(sf.RTT),
				BytesSent:     sf.BytesSent,
				BytesReceived: sf.BytesReceived,
				BytesAcked:    sf.BytesAcked,
				Retransmits:   sf.TotalRetrans,
				InterfaceName: s.ifName(sf.Interface),
			}
		}
	}
	return out
}

// kindPairs pairs each event kind with its API kind.
var kindPairs = [...]struct {
	kind events.Kind
	pb   pb.EventKind
}{
	{events.KindConnectionCreated, pb.EventKind_EVENT_KIND_CONNECTION_CREATED},
	{events.KindConnectionEstablished, pb.EventKind_EVENT_KIND_CONNECTION_ESTABLISHED},
	{events.KindConnectionClosed, pb.EventKind_EVENT_KIND_CONNECTION_CLOSED},
	{events.KindAnnounced, pb.EventKind_EVENT_KIND_ANNOUNCED},
	{events.KindRemoved, pb.EventKind_EVENT_KIND_REMOVED},
	{events.KindSubflowEstablished, pb.EventKind_EVENT_KIND_SUBFLOW_ESTABLISHED},
	{events.KindSubflowClosed, pb.EventKind_EVENT_KIND_SUBFLOW_CLOSED},
	{events.KindSubflowPriority, pb.EventKind_EVENT_KIND_SUBFLOW_PRIORITY},
	{events.KindListenerCreated, pb.EventKind_EVENT_KIND_LISTENER_CREATED},
	{events.KindListenerClosed, pb.EventKind_EVENT_KIND_LISTENER_CLOSED},
	{events.KindLinkUp, pb.EventKind_EVENT_KIND_LINK_UP},
	{events.KindLinkDown, pb.EventKind_EVENT_KIND_LINK_DOWN},
	{events.KindAddressAdded, pb.EventKind_EVENT_KIND_ADDRESS_ADDED},
	{events.KindAddressRemoved, pb.EventKind_EVENT_KIND_ADDRESS_REMOVED},
	{events.KindEndpointAdded, pb.EventKind_EVENT_KIND_ENDPOINT_ADDED},
	{events.KindEndpointRemoved, pb.EventKind_EVENT_KIND_ENDPOINT_REMOVED},
	{events.KindEndpointChanged, pb.EventKind_EVENT_KIND_ENDPOINT_CHANGED},
	{events.KindLimitsChanged, pb.EventKind_EVENT_KIND_LIMITS_CHANGED},
	{events.KindPolicyApplied, pb.EventKind_EVENT_KIND_POLICY_APPLIED},
	{events.KindReconciled, pb.EventKind_EVENT_KIND_RECONCILED},
	{events.KindEventsLost, pb.EventKind_EVENT_KIND_EVENTS_LOST},
	{events.KindDecision, pb.EventKind_EVENT_KIND_DECISION},
}

func kindToPB(k events.Kind) pb.EventKind {
	for _, p := range kindPairs {
		if p.kind == k {
			return p.pb
		}
	}
	return pb.EventKind_EVENT_KIND_UNSPECIFIED
}

func knownKind(k pb.EventKind) bool {
	if k == pb.EventKind_EVENT_KIND_SNAPSHOT_END {
		return true
	}
	for _, p := range kindPairs {
		if p.pb == k {
			return true
		}
	}
	return false
}

func reconcileToPB(r *events.Reconcile) *pb.Reconcile {
	if r == nil {
		return nil
	}
	out := &pb.Reconcile{
		Time:    timestamppb.New(r.Time),
		Trigger: r.Trigger,
		Changes: uint32(r.Changes),
		Took:    durationpb.New(r.Took),
	}
	if r.Err != nil {
		out.Error = r.Err.Error()
	}
	return out
}

func linkToPB(l netmon.Link) *pb.Link {
	kind := string(l.Kind)
	if kind == "" {
		kind = string(config.KindPhysical)
	}
	return &pb.Link{Index: uint32(l.Index), Name: l.Name, Kind: kind, Up: l.Up, Carrier: l.Running}
}

func (s *Server) eventToPB(e events.Event, snapshot bool) *pb.WatchResponse {
	out := &pb.WatchResponse{
		Kind:     kindToPB(e.Kind),
		Time:     timestamppb.New(e.Time),
		Snapshot: snapshot,
		Token:    e.Token,
		Reason:   e.Reason,
	}
	switch {
	case e.Decision != nil:
		d := e.Decision
		pd := &pb.Decision{
			Action:       string(d.Action),
			LocalAddress: addrString(d.Local.Addr()), LocalPort: uint32(d.Local.Port()),
			RemoteAddress: addrString(d.Remote.Addr()), RemotePort: uint32(d.Remote.Port()),
			LocalId: uint32(d.LocalID), RemoteId: uint32(d.RemoteID), Backup: d.Backup, Rule: d.Rule,
		}
		if d.Err != nil {
			pd.Error = d.Err.Error()
		}
		out.Detail = &pb.WatchResponse_Decision{Decision: pd}
	case e.Connection != nil:
		out.Detail = &pb.WatchResponse_Connection{Connection: s.connectionToPB(*e.Connection)}
	case e.Kernel != nil:
		k := e.Kernel
		switch e.Kind {
		case events.KindAnnounced, events.KindRemoved:
			out.Detail = &pb.WatchResponse_Announcement{Announcement: &pb.Announcement{
				RemoteId: uint32(k.RemoteID), Address: addrString(k.Remote.Addr()), Port: uint32(k.Remote.Port())}}
		case events.KindListenerCreated, events.KindListenerClosed:
			out.Detail = &pb.WatchResponse_Listener{Listener: &pb.Listener{
				Address: addrString(k.Local.Addr()), Port: uint32(k.Local.Port())}}
		case events.KindSubflowEstablished, events.KindSubflowClosed, events.KindSubflowPriority:
			out.Detail = &pb.WatchResponse_Subflow{Subflow: &pb.Subflow{
				LocalAddress: addrString(k.Local.Addr()), LocalPort: uint32(k.Local.Port()),
				RemoteAddress: addrString(k.Remote.Addr()), RemotePort: uint32(k.Remote.Port()),
				LocalId: uint32(k.LocalID), RemoteId: uint32(k.RemoteID), Backup: k.Backup,
				InterfaceName: s.ifName(int(k.IfIndex))}}
			if k.SubflowErr != 0 && out.Reason == "" {
				out.Reason = k.SubflowErr.Error()
			}
		default:
			out.Detail = &pb.WatchResponse_Connection{Connection: &pb.Connection{
				Token:        k.Token,
				LocalAddress: addrString(k.Local.Addr()), LocalPort: uint32(k.Local.Port()),
				RemoteAddress: addrString(k.Remote.Addr()), RemotePort: uint32(k.Remote.Port())}}
		}
	case e.Endpoint != nil:
		out.Detail = &pb.WatchResponse_Endpoint{Endpoint: s.endpointToPB(*e.Endpoint)}
	case e.Addr != nil:
		a := e.Addr
		out.Detail = &pb.WatchResponse_Address{Address: &pb.Address{
			Address: addrString(a.Prefix.Addr()), PrefixLength: uint32(a.Prefix.Bits()),
			InterfaceIndex: uint32(a.Index), InterfaceName: s.ifName(a.Index)}}
	case e.Link != nil:
		out.Detail = &pb.WatchResponse_Link{Link: linkToPB(*e.Link)}
	case e.Limits != nil:
		out.Detail = &pb.WatchResponse_Limits{Limits: limitsToPB(*e.Limits)}
	case e.Reconcile != nil:
		out.Detail = &pb.WatchResponse_Reconcile{Reconcile: reconcileToPB(e.Reconcile)}
	}
	return out
}

func (s *Server) statusToPB(st Status) *pb.Status {
	mode := pb.Mode_MODE_UNSPECIFIED
	switch st.Mode {
	case "kernel":
		mode = pb.Mode_MODE_KERNEL
	case "userspace":
		mode = pb.Mode_MODE_USERSPACE
	case "fallback":
		mode = pb.Mode_MODE_FALLBACK
	}
	c := st.Capabilities
	out := &pb.Status{
		Mode: mode, ConfiguredMode: st.ConfiguredMode, ModeReason: st.ModeReason,
		Version: st.Version, Netns: st.NetNS,
		Capabilities: &pb.Capabilities{
			Family: c.Family, FamilyVersion: uint32(c.FamilyVersion), EventsGroup: c.EventsGroup,
			Enabled: c.Enabled, PathManagers: c.PathManagers, PathManager: c.PathManager,
		},
		Started: timestamppb.New(st.Started),
		Uptime:  durationpb.New(time.Since(st.Started).Truncate(time.Second)),
		Counts: &pb.Counts{
			EndpointsPolicy: uint32(st.EndpointsPolicy), EndpointsApi: uint32(st.EndpointsManual),
			EndpointsForeign: uint32(st.EndpointsForeign), Connections: uint32(st.Connections),
			Subflows: uint32(st.Subflows), ReconcileRuns: st.ReconcileRuns,
			ReconcileErrors: st.ReconcileErrors, KernelEvents: st.KernelEvents,
		},
		LastReconcile: reconcileToPB(st.LastReconcile),
		Ready:         st.Ready,
	}
	return out
}

func timestampOf(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
func timestampNow() *timestamppb.Timestamp           { return timestamppb.Now() }

// stateName returns the API's name of a socket state: the kernel's TCP
// state in lower case, e.g. "established", "syn-sent", "listen".
func stateName(st diag.State) string {
	switch st {
	case diag.StateEstablished:
		return "established"
	case diag.StateSynSent:
		return "syn-sent"
	case diag.StateSynRecv:
		return "syn-recv"
	case diag.StateFinWait1:
		return "fin-wait-1"
	case diag.StateFinWait2:
		return "fin-wait-2"
	case diag.StateTimeWait:
		return "time-wait"
	case diag.StateClose:
		return "close"
	case diag.StateCloseWait:
		return "close-wait"
	case diag.StateLastAck:
		return "last-ack"
	case diag.StateListen:
		return "listen"
	case diag.StateClosing:
		return "closing"
	case diag.StateNewSynRecv:
		return "new-syn-recv"
	case diag.StateBoundInactive:
		return "bound-inactive"
	}
	return "state-" + strconv.Itoa(int(st))
}
