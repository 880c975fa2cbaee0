package pm

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestFileStoreLoadJournal: the journal's changes apply in order; a change
// cut short (by a full disk) was not made, and is ignored, as are blank
// lines; anything else that is not a change is corruption.
func TestFileStoreLoadJournal(t *testing.T) {
	const saved = "{\n  \"endpoints\": [\n    {\n      \"id\": 1,\n      \"addr\": \"192.0.2.1\"\n    }\n  ]\n}\n"
	for _, tc := range []struct {
		name, tail string
		want       []string // addresses; nil when the file is corrupt
	}{
		{"saved only", "", []string{"192.0.2.1"}},
		{"added", "\n{\"id\":2,\"addr\":\"192.0.2.2\"}\n{\"id\":3,\"addr\":\"192.0.2.3\"}", []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}},
		{"added and removed", "\n{\"id\":2,\"addr\":\"192.0.2.2\"}\n{\"id\":1,\"addr\":\"192.0.2.1\",\"removed\":true}\n{\"id\":2,\"addr\":\"192.0.2.2\",\"removed\":true}\n{\"id\":2,\"addr\":\"192.0.2.2\"}", []string{"192.0.2.2"}},
		{"removed, other ID", "\n{\"id\":4,\"addr\":\"192.0.2.1\",\"removed\":true}", []string{"192.0.2.1"}},
		{"cut short at the end", "\n{\"id\":2,\"addr\":\"192.0.2.2\"}\n{\"id\":3,\"ad", []string{"192.0.2.1", "192.0.2.2"}},
		{"cut short, in the room", "\n{\"id\":2,\"addr\":\"192.0.2.2\"}\n{\"id\":3,\"ad     \n   ", []string{"192.0.2.1", "192.0.2.2"}},
		{"removal cut short", "\n{\"id\":1,\"addr\":\"192.0.2.1\",\"remo", []string{"192.0.2.1"}},
		{"cut short, then added", "\n{\"id\":2,\"ad\n{\"id\":3,\"addr\":\"192.0.2.3\"}", []string{"192.0.2.1", "192.0.2.3"}},
		{"garbage", "\nhello", nil},
		{"two records on a line", "\n{\"id\":2,\"addr\":\"192.0.2.2\"} {\"id\":3,\"addr\":\"192.0.2.3\"}", nil},
		{"record without an ID", "\n{\"addr\":\"192.0.2.2\"}", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "owned.json")
			if err := os.WriteFile(path, []byte(saved+tc.tail), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := (&FileStore{Path: path}).Load()
			if tc.want == nil {
				if err == nil || !strings.Contains(err.Error(), "corrupt") {
					t.Errorf("Load = %+v, %v; want an error saying the records are corrupt", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var addrs []string
			for _, e := range got.Endpoints {
				addrs = append(addrs, e.Addr.String())
			}
			if !slices.Equal(addrs, tc.want) {
				t.Errorf("Load = %v, want %v", addrs, tc.want)
			}
		})
	}
}

// TestChangeJSON: the journal's hand-written lines are what encoding/json
// makes of a change.
func TestChangeJSON(t *testing.T) {
	for _, c := range []change{
		{OwnedEndpoint: OwnedEndpoint{ID: 3, Addr: netip.MustParseAddr("192.0.2.1")}},
		{OwnedEndpoint: OwnedEndpoint{ID: 255, Addr: netip.MustParseAddr("2001:db8::1"), Port: 8080}, Removed: true},
		{OwnedEndpoint: OwnedEndpoint{ID: 7, Addr: netip.MustParseAddr("198.51.100.7"), Manual: true}},
		{OwnedEndpoint: OwnedEndpoint{ID: 8, Addr: netip.MustParseAddr("198.51.100.8"), Rule: "wired and wireless"}},
		{OwnedEndpoint: OwnedEndpoint{ID: 9, Addr: netip.MustParseAddr("198.51.100.9"), Rule: "quote \" <tag> & é\n"}},
	} {
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.appendJSON(nil); string(got) != "\n"+string(want) {
			t.Errorf("appendJSON(%+v) = %q, want %q", c, got, "\n"+string(want))
		}
	}
}
