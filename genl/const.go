package genl

// Values of the mptcp_pm family, from the kernel's netlink specification
// (Documentation/netlink/specs/mptcp_pm.yaml) and its uapi headers
// (include/uapi/linux/mptcp.h, mptcp_pm.h). golang.org/x/sys/unix has none of
// them. The spec reuses attribute numbers across three attribute sets, so each
// set has its own type.

const (
	// FamilyName is the generic-netlink family of the MPTCP path manager.
	FamilyName = "mptcp_pm"
	// FamilyVersion is the version of the family this package speaks.
	FamilyVersion = 1
	// EventsGroupName is the multicast group that carries MPTCP events.
	EventsGroupName = "mptcp_pm_events"
	// CommandsGroupName is the family's other multicast group (unused for events).
	CommandsGroupName = "mptcp_pm_cmds"
)

// command is a genetlink command of the mptcp_pm family (MPTCP_PM_CMD_*).
type command uint8

const (
	cmdAddAddr        command = 1
	cmdDelAddr        command = 2
	cmdGetAddr        command = 3
	cmdFlushAddrs     command = 4
	cmdSetLimits      command = 5
	cmdGetLimits      command = 6
	cmdSetFlags       command = 7
	cmdAnnounce       command = 8
	cmdRemove         command = 9
	cmdSubflowCreate  command = 10
	cmdSubflowDestroy command = 11
)

// pmAttr is a top-level attribute of a request (MPTCP_PM_ATTR_*). The
// endpoint set's only attribute, MPTCP_PM_ENDPOINT_ADDR, has the same value as
// pmAttrAddr.
type pmAttr uint16

const (
	pmAttrAddr        pmAttr = 1
	pmAttrRcvAddAddrs pmAttr = 2
	pmAttrSubflows    pmAttr = 3
	pmAttrToken       pmAttr = 4
	pmAttrLocID       pmAttr = 5
	pmAttrAddrRemote  pmAttr = 6
)

// addrAttr is an attribute of the address nest (MPTCP_PM_ADDR_ATTR_*).
type addrAttr uint16

const (
	addrAttrFamily addrAttr = 1
	addrAttrID     addrAttr = 2
	addrAttrAddr4  addrAttr = 3 // big-endian
	addrAttrAddr6  addrAttr = 4
	addrAttrPort   addrAttr = 5 // host byte order, unlike the events' ports
	addrAttrFlags  addrAttr = 6
	addrAttrIfIdx  addrAttr = 7
)

// eventAttr is an attribute of an event (MPTCP_ATTR_*).
type eventAttr uint16

const (
	eventAttrToken       eventAttr = 1
	eventAttrFamily      eventAttr = 2
	eventAttrLocID       eventAttr = 3
	eventAttrRemID       eventAttr = 4
	eventAttrSAddr4      eventAttr = 5
	eventAttrSAddr6      eventAttr = 6
	eventAttrDAddr4      eventAttr = 7
	eventAttrDAddr6      eventAttr = 8
	eventAttrSPort       eventAttr = 9  // big-endian
	eventAttrDPort       eventAttr = 10 // big-endian
	eventAttrBackup      eventAttr = 11
	eventAttrError       eventAttr = 12
	eventAttrFlags       eventAttr = 13
	eventAttrTimeout     eventAttr = 14
	eventAttrIfIdx       eventAttr = 15
	eventAttrResetReason eventAttr = 16
	eventAttrResetFlags  eventAttr = 17
	eventAttrServerSide  eventAttr = 18
)

// Address families as the kernel writes them in the address nest and events.
const (
	afINET  = 2
	afINET6 = 10
)
