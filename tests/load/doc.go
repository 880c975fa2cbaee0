// Package load generates and checks test traffic for mptcpd's datapath
// benchmarks: a stream of fixed-size, timestamped records that the
// receiver verifies one by one, so that it can report not only goodput and
// an end-to-end SHA-256 but also the longest stall, per-record latency and
// the goodput timeline around an event such as a path failure.
//
// # Record format
//
// A stream is a sequence of records of one fixed size S (DefaultSize,
// 1024 bytes, unless configured; at least MinSize, 32, at most MaxSize). A
// stream of N records is exactly N×S bytes: there is no stream header, so
// both ends must agree on S and on the seed. Record number i (counting from
// 0) is:
//
//	offset  size    field
//	0       8       sequence number i, big-endian
//	8       8       send time, Unix nanoseconds, big-endian (signed)
//	16      S-16    filler: F[o(i) : o(i)+S-16]
//
// The filler is pseudo-random, derived from the seed and the sequence
// number, so that the receiver checks the content of every record:
//
//   - F is the seed's pad: the first PadSpan+S-16 bytes of the SplitMix64
//     stream started from state = seed (each step adds 0x9e3779b97f4a7c15
//     to the state and outputs mix(state) as 8 little-endian bytes).
//   - o(i) = mix(seed XOR mix(i)) mod PadSpan (PadSpan is 65536).
//   - mix is the SplitMix64 finaliser: z ^= z>>30; z *= 0xbf58476d1ce4e5b9;
//     z ^= z>>27; z *= 0x94d049bb133111eb; z ^= z>>31.
//
// The filler costs a copy to produce and a comparison to check, so the
// load tool measures the path rather than itself.
//
// # Measuring
//
// Send writes records, as fast as possible or at a rate (token bucket),
// for a number of records or for a duration, then half-closes the
// connection (CloseWrite) so that the receiver sees the end of the stream.
// The send time of a record is taken when the record is handed to the
// connection, so its latency includes the time spent in the sender's socket
// buffer, as an application's data would.
//
// Receive reads the stream to its end and checks every record: its
// sequence number (no gap, no duplicate), its filler, and that no record is
// cut short. It reports the first bad record in an error matching
// ErrSequence, ErrCorrupt or ErrShort, and otherwise the statistics: bytes
// and records, the time from the first byte to the last, goodput, the
// SHA-256 of the stream (compare it with the sender's), the longest gap
// between consecutive record arrivals (the stall) and when it began,
// latency percentiles (arrival minus send time; meaningful when both ends
// share a clock, as on one machine), and a timeline of delivered bytes in
// fixed bins, from which RecvStats.Recovery computes the time to recover to
// 80 % of the post-event rate.
//
// DialSOCKS5 opens a connection through a SOCKS5 proxy (CONNECT, with no
// authentication or with a user name and password), so that the same
// traffic can be sent through mptcpd's SOCKS5 ingress.
//
// The command mptcpd-load (in cmd/mptcpd-load) exposes all of this on the
// command line.
package load
