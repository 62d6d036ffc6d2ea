package security

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseScramUsers(t *testing.T) {
	in := `# first admin
SCRAM-SHA-512=[name=admin,password=admin-secret]

scram-sha-256=[name=alice,password="a,b]c"]
`
	got, err := ParseScramUsers(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []ScramUser{
		{Mechanism: MechanismScramSHA512, Name: "admin", Password: "admin-secret"},
		{Mechanism: MechanismScramSHA256, Name: "alice", Password: "a,b]c"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("users (-want +got):\n%s", d)
	}
	for _, bad := range []string{
		"PLAIN=[name=a,password=b]",
		"SCRAM-SHA-512=name=a,password=b",
		"SCRAM-SHA-512=[name=a]",
		"SCRAM-SHA-512=[password=b]",
		"SCRAM-SHA-512=[name=a,password=b,salt=c]",
		`SCRAM-SHA-512=[name=a,password="b]`,
		"SCRAM-SHA-512",
	} {
		if _, err := ParseScramUsers(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: parsed, want an error", bad)
		}
	}
}
