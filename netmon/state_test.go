package netmon

import "testing"

func TestIndexOf(t *testing.T) {
	s := State{Links: map[int]Link{1: {Name: "lo"}, 7: {Name: "wwan0"}}}
	for name, want := range map[string]int{"wwan0": 7, "lo": 1, "eth9": 0, "": 0} {
		if got := s.IndexOf(name); got != want {
			t.Errorf("IndexOf(%q) = %d, want %d", name, got, want)
		}
	}
}
