package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	mptcpdv1 "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// outputFormat is the value of -o/--output.
type outputFormat string

const (
	outputTable outputFormat = "table"
	outputJSON  outputFormat = "json"
)

func (o *outputFormat) String() string { return string(*o) }
func (o *outputFormat) Type() string   { return "format" }
func (o *outputFormat) Set(s string) error {
	switch outputFormat(s) {
	case outputTable, outputJSON:
		*o = outputFormat(s)
		return nil
	}
	return fmt.Errorf("unknown output format %q: want table or json", s)
}

func (a *app) jsonOutput() bool { return a.output == outputJSON }

// protoJSON is how responses are written: the .proto's field names, and
// fields at their zero value too, so scripts need not guess.
func protoJSON() protojson.MarshalOptions {
	return protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}
}

// marshalJSON writes m as protobuf JSON in a stable layout: protojson
// varies its whitespace on purpose, so it is normalised here, indented
// or on one line.
func marshalJSON(m proto.Message, indent bool) ([]byte, error) {
	b, err := protoJSON().Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("writing %s as JSON: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	var out bytes.Buffer
	if indent {
		err = json.Indent(&out, b, "", "  ")
	} else {
		err = json.Compact(&out, b)
	}
	if err != nil {
		return nil, fmt.Errorf("normalising JSON: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// printJSON writes one response as an indented JSON object.
func (a *app) printJSON(m proto.Message) error {
	b, err := marshalJSON(m, true)
	if err != nil {
		return err
	}
	_, err = a.stdout.Write(b)
	return err
}

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

// row writes one row; empty cells show as "-".
func (t *table) row(cells ...string) {
	out := make([]string, len(cells))
	for i, c := range cells {
		out[i] = c
		if c == "" {
			out[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(out, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// hostPort writes an address and port as ADDRESS:PORT ([ADDRESS]:PORT for
// IPv6), or the address alone when the port is 0.
func hostPort(addr string, port uint32) string {
	if port == 0 || addr == "" {
		return addr
	}
	if ip, err := netip.ParseAddr(addr); err == nil && port <= 65535 {
		return netip.AddrPortFrom(ip, uint16(port)).String()
	}
	return net.JoinHostPort(addr, strconv.FormatUint(uint64(port), 10))
}

func num[T uint32 | uint64](n T) string { return strconv.FormatUint(uint64(n), 10) }

// portString writes a port, "" for none.
func portString(p uint32) string {
	if p == 0 {
		return ""
	}
	return num(p)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// ownerString names an endpoint's owner as the OWNER column shows it.
func ownerString(o mptcpdv1.Owner) string {
	switch o {
	case mptcpdv1.Owner_OWNER_POLICY:
		return "policy"
	case mptcpdv1.Owner_OWNER_API:
		return "api"
	case mptcpdv1.Owner_OWNER_FOREIGN:
		return "foreign"
	}
	return ""
}

func modeString(m mptcpdv1.Mode) string {
	switch m {
	case mptcpdv1.Mode_MODE_KERNEL:
		return "kernel"
	case mptcpdv1.Mode_MODE_USERSPACE:
		return "userspace"
	case mptcpdv1.Mode_MODE_FALLBACK:
		return "fallback"
	}
	return "unknown"
}

// timeString writes a timestamp in the local time zone, "" when unset.
func (a *app) timeString(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().In(a.loc).Format("2006-01-02 15:04:05 MST")
}

// durationString writes a duration, "" when unset.
func durationString(d *durationpb.Duration) string {
	if d == nil {
		return ""
	}
	return d.AsDuration().String()
}

// roundDuration writes a long duration to the second.
func roundDuration(d *durationpb.Duration) string {
	if d == nil {
		return ""
	}
	return d.AsDuration().Round(time.Second).String()
}

// endpointHeader and endpointRow are the columns of an endpoint table.
func endpointHeader() []string {
	return []string{"ID", "ADDRESS", "PORT", "FLAGS", "DEV", "OWNER", "RULE"}
}

func endpointRow(e *mptcpdv1.Endpoint) []string {
	dev := e.GetInterfaceName()
	if dev == "" && e.GetInterfaceIndex() != 0 {
		dev = "#" + num(e.GetInterfaceIndex())
	}
	return []string{num(e.GetId()), e.GetAddress(), portString(e.GetPort()), flagString(e.GetFlags()), dev, ownerString(e.GetOwner()), e.GetRule()}
}

// printEndpoints writes endpoints as a table.
func (a *app) printEndpoints(eps ...*mptcpdv1.Endpoint) error {
	t := newTable(a.stdout, endpointHeader()...)
	for _, e := range eps {
		t.row(endpointRow(e)...)
	}
	return t.flush()
}
