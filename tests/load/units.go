package load

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseRate parses a rate in bits per second: a number with an optional
// unit, case-insensitive: none or "bit"; "k", "m", "g", "t" or "kbit",
// "mbit", "gbit", "tbit" (powers of 1000); "kibit", "mibit", "gibit",
// "tibit" (powers of 1024). Units in bytes per second ("mbps") are refused,
// as their meaning varies between tools.
func ParseRate(s string) (float64, error) {
	num, unit := splitUnit(s)
	mult := map[string]float64{
		"": 1, "bit": 1,
		"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12,
		"kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
		"kibit": 1 << 10, "mibit": 1 << 20, "gibit": 1 << 30, "tibit": 1 << 40,
	}
	m, ok := mult[unit]
	if !ok {
		if strings.HasSuffix(unit, "bps") || strings.HasSuffix(unit, "b/s") {
			return 0, fmt.Errorf("rate %q: unit %q is ambiguous; write bits per second, e.g. 50mbit", s, unit)
		}
		return 0, fmt.Errorf("rate %q: unknown unit %q (want e.g. 800k, 50mbit, 1g)", s, unit)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("rate %q: %q is not a non-negative number", s, num)
	}
	return v * m, nil
}

// ParseBytes parses a byte count: a number with an optional unit,
// case-insensitive: none or "b"; "k", "m", "g", "t" or "kib", "mib", "gib",
// "tib" (powers of 1024); "kb", "mb", "gb", "tb" (powers of 1000).
func ParseBytes(s string) (int64, error) {
	num, unit := splitUnit(s)
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	}
	m, ok := mult[unit]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (want e.g. 64MiB, 1g, 500kb)", s, unit)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || math.IsNaN(v) {
		return 0, fmt.Errorf("size %q: %q is not a non-negative number", s, num)
	}
	if v*m >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v * m), nil
}

// splitUnit splits "50mbit" into "50" and "mbit" (lower-cased).
func splitUnit(s string) (num, unit string) {
	s = strings.TrimSpace(s)
	i := strings.LastIndexAny(s, "0123456789.")
	return s[:i+1], strings.ToLower(strings.TrimSpace(s[i+1:]))
}
