package crash_test

import "testing"

// TestBookkeeping checks the producer-side records the crash verdict rests
// on: a second acknowledgement at one offset is caught, and only values this
// test produced parse.
func TestBookkeeping(t *testing.T) {
	a := newAckLog()
	a.add(1, 5, 42)
	a.add(1, 5, 43)
	if seq, ok := a.acked(1, 5); !ok || seq != 42 {
		t.Errorf("acked(1, 5) = %d, %v; want 42, true", seq, ok)
	}
	if _, ok := a.acked(1, 4); ok {
		t.Error("acked(1, 4): nothing was acknowledged there")
	}
	if a.count() != 1 || len(a.conflicts()) != 1 {
		t.Errorf("count %d, conflicts %q; want 1 and one conflict", a.count(), a.conflicts())
	}

	if seq, err := parseValue(value(123456789)); err != nil || seq != 123456789 {
		t.Errorf("parseValue(value(123456789)) = %d, %v", seq, err)
	}
	for _, v := range []string{"", "000000000001", "000000000001-garbage", string(value(7)) + "x"} {
		if _, err := parseValue([]byte(v)); err == nil {
			t.Errorf("parseValue(%q): no error", v)
		}
	}
}
