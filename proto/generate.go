// Package proto holds mptcpd's API definitions (mptcpd/v1) and the Go code
// generated from them, which is committed. Regenerate it, after changing a
// .proto file, with
//
//	go generate ./proto
//
// which needs only the Go module proxy: buf and the protoc plugins are
// pinned as tools in proto/tools/go.mod. scripts/test.sh lints the
// definitions and fails when the committed code is stale.
package proto

//go:generate go tool -modfile=tools/go.mod buf lint
//go:generate go tool -modfile=tools/go.mod buf generate
