//go:build !unix

package main

// fileGroup names the group that owns path; this system has no such
// thing.
func fileGroup(string) string { return "" }
