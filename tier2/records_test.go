package tier2

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestEachBatchRecord(t *testing.T) {
	b := append(testBatch(10, 3, 5, 1000), testBatch(13, 2, 5, 2000)...)
	ctrl := testBatch(15, 1, 0, 3000)
	binary.BigEndian.PutUint16(ctrl[bOffAttributes:], 0x20)
	binary.BigEndian.PutUint32(ctrl[bOffCRC:], crc32Sum(ctrl[bOffAttributes:]))
	b = append(b, ctrl...)
	var offs []int64
	if err := EachBatchRecord(b, func(_ *kmsg.Record, off, ts int64) { offs = append(offs, off) }); err != nil {
		t.Fatal(err)
	}
	if len(offs) != 5 || offs[0] != 10 || offs[4] != 14 {
		t.Errorf("offsets %v, want 10-14 (the control batch skipped)", offs)
	}
	b[30] ^= 1
	if err := EachBatchRecord(b, func(*kmsg.Record, int64, int64) {}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a damaged batch: %v", err)
	}
	if err := EachBatchRecord(b[:40], func(*kmsg.Record, int64, int64) {}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a truncated batch: %v", err)
	}
}

func FuzzEachBatchRecord(f *testing.F) {
	good := testBatch(0, 3, 10, 1)
	f.Add(good)
	f.Add([]byte{})
	huge := append([]byte(nil), good...)
	binary.BigEndian.PutUint32(huge[bOffLength:], 1<<31-1)
	f.Add(huge)
	f.Add(append(append([]byte(nil), good...), 0xff, 0xff, 0xff))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = EachBatchRecord(b, func(*kmsg.Record, int64, int64) {})
	})
}
