package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParse feeds Parse arbitrary documents. Parse must never panic; what
// it accepts must pass Validate, and what it refuses must be refused with
// Errors that each say something and point inside the document.
// The seed corpus (testdata/fuzz/FuzzParse) holds the default file.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile(defaultFile); err == nil {
		f.Add(data)
	}
	f.Add([]byte(sixRules))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.toml")
		if err == nil {
			if c == nil {
				t.Fatal("Parse returned neither a Config nor an error")
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Parse accepted a Config that Validate refuses: %v", err)
			}
			for _, r := range c.Rules {
				if r.Name == "" {
					t.Fatal("Parse left a rule unnamed")
				}
			}
			return
		}
		if c != nil {
			t.Fatal("Parse returned a Config with an error")
		}
		lines := strings.Count(string(data), "\n") + 1
		for _, e := range configErrors(err) {
			if e == nil {
				t.Fatalf("not a config error in %v", err)
			}
			if e.Msg == "" || e.File != "fuzz.toml" || e.Line < 0 || e.Line > lines {
				t.Fatalf("bad error %+v (document has %d lines)", e, lines)
			}
		}
	})
}

// configErrors unpacks the *Error values of an error from Parse; an error
// of another type shows as nil.
func configErrors(err error) []*Error {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var list []*Error
		for _, e := range joined.Unwrap() {
			list = append(list, configErrors(e)...)
		}
		return list
	}
	var e *Error
	if !errors.As(err, &e) {
		return []*Error{nil}
	}
	return []*Error{e}
}
