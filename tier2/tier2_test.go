package tier2

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/vfs"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testBatch builds an uncompressed batch of n records of size bytes each.
func testBatch(base int64, n, size int, ts int64) []byte {
	var records []byte
	val := make([]byte, size)
	for i := 0; i < n; i++ {
		r := kmsg.Record{OffsetDelta: int32(i), Value: val}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		records = r.AppendTo(records)
	}
	rb := kmsg.RecordBatch{FirstOffset: base, PartitionLeaderEpoch: -1, Magic: 2, LastOffsetDelta: int32(n - 1),
		FirstTimestamp: ts, MaxTimestamp: ts, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		NumRecords: int32(n), Records: records}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[bOffLength:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[bOffCRC:], crc32.Checksum(b[bOffAttributes:], crc32c))
	return b
}

// writeSegment writes batches of n records from base until size bytes.
func writeSegment(t testing.TB, fs vfs.FS, dir string, files *FileCache, base int64, n, recSize int, size int64) *Segment {
	t.Helper()
	w, err := Create(fs, dir, files, base)
	if err != nil {
		t.Fatal(err)
	}
	off := base
	for w.Size() < size {
		if err := w.Append(testBatch(off, n, recSize, 1000+off)); err != nil {
			t.Fatal(err)
		}
		off += int64(n)
	}
	s, err := w.Finish(off)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A written segment loads back with the same metadata, reads every offset
// from the batch holding it, and the file cache stays bounded.
func TestWriteLoadRead(t *testing.T) {
	mem := vfs.NewMemFS()
	files := NewFileCache(2)
	const dir = "/seg/p"
	var want []*Segment
	for i := int64(0); i < 5; i++ {
		want = append(want, writeSegment(t, mem, dir, files, i*1000, 10, 50, 5000))
	}
	segs, rep, err := Load(mem, dir, files, quiet())
	if err != nil || rep.Rebuilt != 0 || len(segs) != 5 {
		t.Fatalf("Load: %d segments, report %+v, err %v", len(segs), rep, err)
	}
	for i, s := range segs {
		w := want[i]
		if s.Base != w.Base || s.Next != w.Next || s.Size != w.Size || s.MaxTs != w.MaxTs {
			t.Fatalf("segment %d loads as %+v, wrote %+v", i, s, w)
		}
		for off := s.Base; off < s.Next; off += 3 {
			buf, _, err := s.ReadFrom(off, 1, nil, true)
			if err != nil {
				t.Fatal(err)
			}
			h := headerInfo(buf)
			if h.base > off || h.last() < off || int64(len(buf)) != h.length {
				t.Fatalf("ReadFrom(%d) returned batch %d..%d (%d bytes)", off, h.base, h.last(), len(buf))
			}
		}
		if files.Open() > 2 {
			t.Fatalf("%d files open, cache bound is 2", files.Open())
		}
	}
}

// Unfinished writes are cleaned up. A log cut short (damage: logs are
// renamed into place complete) is kept as it is, not cut at its last whole
// batch: it keeps its recorded end and is reported damaged, every time it
// loads, until it is repaired.
func TestLoadRepairs(t *testing.T) {
	dir := t.TempDir()
	files := NewFileCache(8)
	s := writeSegment(t, vfs.Default, dir, files, 0, 5, 40, 4000)
	os.WriteFile(filepath.Join(dir, "00000000000000000100.log.tmp"), []byte("junk"), 0o644)
	os.WriteFile(filepath.Join(dir, "00000000000000000200.index"), []byte("orphan"), 0o644)
	if err := os.Truncate(s.Path(), s.Size-7); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		segs, rep, err := Load(vfs.Default, dir, files, quiet())
		if err != nil {
			t.Fatal(err)
		}
		if wantRemoved := 2 - 2*i; rep.Removed != wantRemoved || rep.Damaged != 1 || rep.Rebuilt != 0 || len(segs) != 1 {
			t.Fatalf("report %+v, %d segments", rep, len(segs))
		}
		d := segs[0].Damage()
		if segs[0].Next != s.Next || d == nil || d.HeaderLost || d.Next != s.Next {
			t.Fatalf("next %d, damage %+v after load; want the recorded next %d", segs[0].Next, d, s.Next)
		}
		if fi, err := os.Stat(s.Path()); err != nil || fi.Size() != s.Size-7 {
			t.Fatalf("log changed by Load: %v %v", fi.Size(), err)
		}
	}
}

func FuzzParseIndexHeader(f *testing.F) {
	x := newIndexer(7)
	x.add(0, batchInfo{base: 7, length: 100, maxTs: 5})
	h := x.header(kindOffset, 8, 100, nil)
	f.Add(h.append(nil))
	f.Add([]byte{})
	f.Add(make([]byte, idxHeaderSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseIndexHeader(b)
		parseOffEntries(b)
		parseTimeEntries(b)
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add(appendCheckpoint(nil, kindProducers, []byte{1, 2, 3}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		parseCheckpoint(b, kindProducers)
		parseCheckpoint(b, kindLogStart)
	})
}

// A batch damaged in the middle of a sealed segment (where Load's cheap
// checks do not look) is never served: the read fails with ErrCorrupt.
func TestDamagedBatchNeverServed(t *testing.T) {
	mem := vfs.NewMemFS()
	files := NewFileCache(4)
	const dir = "/seg/p"
	writeSegment(t, mem, dir, files, 0, 10, 50, 5000)
	name := dir + "/" + segmentName(0) + logSuffix
	data, err := mem.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2+100] ^= 0xff // inside the records of a middle batch (CRC-covered)
	if err := mem.WriteFile(name, data); err != nil {
		t.Fatal(err)
	}
	segs, _, err := Load(mem, dir, NewFileCache(4), quiet())
	if err != nil || len(segs) != 1 {
		t.Fatalf("Load: %d segments, %v", len(segs), err)
	}
	s := segs[0]
	var sawCorrupt bool
	for off := s.Base; off < s.Next; off += 10 {
		buf, _, err := s.ReadFrom(off, 1<<20, nil, true)
		if errors.Is(err, ErrCorrupt) {
			sawCorrupt = true
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for b := buf; len(b) > 0; {
			_, l, _ := parseBatchPrefix(b)
			if _, err := checkBatch(b[:l]); err != nil {
				t.Fatalf("ReadFrom(%d) served a batch that fails its check: %v", off, err)
			}
			b = b[l:]
		}
	}
	if !sawCorrupt {
		t.Fatal("no read reported the damaged batch")
	}
}

// Creating a segment in a new partition directory syncs every parent that
// gained an entry, so the directory survives power loss with its segment.
func TestCreateSyncsNewDirectories(t *testing.T) {
	efs := vfs.NewErrorFS(vfs.NewMemFS())
	var synced []string
	efs.SetHook(func(op vfs.Op, path string) error {
		if op == vfs.OpSyncDir {
			synced = append(synced, path)
		}
		return nil
	})
	writeSegment(t, efs, "/data/segments/p0", NewFileCache(2), 0, 10, 50, 1000)
	for _, want := range []string{"/data", "/data/segments", "/data/segments/p0"} {
		if !slices.Contains(synced, want) {
			t.Errorf("directory %s never synced after its entry was created (synced %v)", want, synced)
		}
	}
}

func TestLeaderEpochsCheckpoint(t *testing.T) {
	mem := vfs.NewMemFS()
	if _, ok, err := ReadLeaderEpochs(mem, "/p"); ok || err != nil {
		t.Fatalf("no checkpoint: ok %v err %v", ok, err)
	}
	want := []EpochStart{{0, 0}, {3, 1200}, {7, 99999}}
	if err := WriteLeaderEpochs(mem, "/p", want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := ReadLeaderEpochs(mem, "/p")
	if err != nil || !ok || len(got) != 3 || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("read back %v %v %v; want %v", got, ok, err, want)
	}
	damaged := appendCheckpoint(nil, kindEpochs, []byte{1, 0, 0, 0, 1, 2})
	f, _ := mem.OpenFile("/p/leader-epochs", os.O_RDWR|os.O_TRUNC, 0)
	f.Write(damaged)
	f.Close()
	if _, _, err := ReadLeaderEpochs(mem, "/p"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged checkpoint: %v; want ErrCorrupt", err)
	}
}
