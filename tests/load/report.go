package load

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Report is the statistics of one end of a transfer in plain units, as
// mptcpd-load prints them (one JSON object with -json).
type Report struct {
	// Role is "send", "recv", or "echo" (a server that echoed Bytes).
	Role       string  `json:"role"`
	Records    int64   `json:"records"`
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	GoodputBps float64 `json:"goodput_bps"`
	SHA256     string  `json:"sha256"`
	// Receiver only.
	StallMs      float64 `json:"stall_ms,omitempty"`
	StallAtMs    float64 `json:"stall_at_ms,omitempty"`
	LatencyP50Ms float64 `json:"latency_p50_ms,omitempty"`
	LatencyP99Ms float64 `json:"latency_p99_ms,omitempty"`
	LatencyMaxMs float64 `json:"latency_max_ms,omitempty"`
	// RecoveryMs is set when the receiver was given an event time and
	// could tell the recovery; RecoveryError says why it could not.
	RecoveryMs    *float64 `json:"recovery_ms,omitempty"`
	RecoveryError string   `json:"recovery_error,omitempty"`
	// MPTCP says whether the connection was MPTCP, when known.
	MPTCP *bool `json:"mptcp,omitempty"`
	// Error is the transfer's error, if it failed.
	Error string `json:"error,omitempty"`
	// Peer is the report the other end sent back, if it sent one; Echo
	// the receiving side of an echoed transfer.
	Peer *Report `json:"peer,omitempty"`
	Echo *Report `json:"echo,omitempty"`
}

// Report returns the sender's statistics as a Report.
func (s SendStats) Report() Report {
	return Report{Role: "send", Records: s.Records, Bytes: s.Bytes, Seconds: s.Duration.Seconds(),
		GoodputBps: s.Goodput, SHA256: hex.EncodeToString(s.SHA256[:])}
}

// Report returns the receiver's statistics as a Report.
func (s RecvStats) Report() Report {
	return Report{Role: "recv", Records: s.Records, Bytes: s.Bytes, Seconds: s.Duration.Seconds(),
		GoodputBps: s.Goodput, SHA256: hex.EncodeToString(s.SHA256[:]),
		StallMs: ms(s.Stall), StallAtMs: ms(s.StallAt),
		LatencyP50Ms: ms(s.LatencyP50), LatencyP99Ms: ms(s.LatencyP99), LatencyMaxMs: ms(s.LatencyMax)}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// String formats the report on one line for people.
func (r Report) String() string {
	var b strings.Builder
	if r.Role == "echo" {
		fmt.Fprintf(&b, "echo: %d bytes echoed", r.Bytes)
	} else {
		fmt.Fprintf(&b, "%s: %d records, %d bytes in %.3f s, %s, sha256 %.16s…", r.Role, r.Records, r.Bytes, r.Seconds, FormatRate(r.GoodputBps), r.SHA256)
	}
	if r.Role == "recv" {
		fmt.Fprintf(&b, ", longest stall %.1f ms at %.1f ms, latency p50 %.2f ms p99 %.2f ms max %.2f ms",
			r.StallMs, r.StallAtMs, r.LatencyP50Ms, r.LatencyP99Ms, r.LatencyMaxMs)
	}
	if r.RecoveryMs != nil {
		fmt.Fprintf(&b, ", recovered in %.1f ms", *r.RecoveryMs)
	}
	if r.RecoveryError != "" {
		fmt.Fprintf(&b, ", recovery unknown: %s", r.RecoveryError)
	}
	if r.MPTCP != nil {
		fmt.Fprintf(&b, ", mptcp %v", *r.MPTCP)
	}
	if r.Error != "" {
		fmt.Fprintf(&b, ", error: %s", r.Error)
	}
	return b.String()
}

// FormatRate formats bits per second with a decimal prefix.
func FormatRate(bps float64) string {
	switch {
	case bps >= 1e9:
		return fmt.Sprintf("%.3f Gbit/s", bps/1e9)
	case bps >= 1e6:
		return fmt.Sprintf("%.3f Mbit/s", bps/1e6)
	case bps >= 1e3:
		return fmt.Sprintf("%.3f kbit/s", bps/1e3)
	}
	return fmt.Sprintf("%.0f bit/s", bps)
}
