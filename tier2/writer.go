package tier2

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/chronik-go/chronik/internal/vfs"
)

func crc32Sum(b []byte) uint32 { return crc32.Checksum(b, crc32c) }

// indexer builds both indexes from batches in log order.
type indexer struct {
	base          int64
	idx           []offEntry
	tidx          []timeEntry
	lastIdxPos    int64
	lastTimePos   int64
	runMax        int64
	lastTimeEntry int64
	maxTsPos      int64
	lastPos       int64
	lastOffset    int64
}

func newIndexer(base int64) *indexer {
	return &indexer{base: base, lastIdxPos: -IndexInterval, lastTimePos: -IndexInterval, runMax: -1 << 63,
		lastTimeEntry: -1 << 63, maxTsPos: -1, lastPos: -1, lastOffset: base - 1}
}

func (x *indexer) add(pos int64, h batchInfo) {
	rel := uint32(h.base - x.base)
	if len(x.idx) == 0 || pos-x.lastIdxPos >= IndexInterval {
		x.idx = append(x.idx, offEntry{rel: rel, pos: uint32(pos)})
		x.lastIdxPos = pos
	}
	if h.maxTs > x.runMax {
		x.runMax = h.maxTs
		x.maxTsPos = pos
	}
	if x.runMax > x.lastTimeEntry && (len(x.tidx) == 0 || pos-x.lastTimePos >= IndexInterval) {
		x.tidx = append(x.tidx, timeEntry{ts: x.runMax, rel: rel, pos: uint32(pos)})
		x.lastTimePos, x.lastTimeEntry = pos, x.runMax
	}
	x.lastPos = pos
	x.lastOffset = h.last()
}

func (x *indexer) header(kind uint16, next, size int64, entries []byte) indexHeader {
	maxTs := x.runMax
	if x.lastPos < 0 {
		maxTs = -1
	}
	n := len(x.idx)
	if kind == kindTime {
		n = len(x.tidx)
	}
	return indexHeader{kind: kind, base: x.base, next: next, logSize: size, maxTs: maxTs,
		maxTsPos: x.maxTsPos, lastPos: x.lastPos, count: uint32(n), ecrc: crc32Sum(entries)}
}

// writeIndexFiles writes both indexes as .tmp files and renames them into
// place. With sync, the files are fsynced before the rename and the
// directory after it.
func writeIndexFiles(fs vfs.FS, dir string, base int64, x *indexer, next, size int64, sync bool) error {
	oe := appendOffEntries(nil, x.idx)
	te := appendTimeEntries(nil, x.tidx)
	oh := x.header(kindOffset, next, size, oe)
	th := x.header(kindTime, next, size, te)
	name := filepath.Join(dir, segmentName(base))
	if err := writeFileAtomic(fs, name+indexSuffix, append(oh.append(nil), oe...), false); err != nil {
		return err
	}
	if err := writeFileAtomic(fs, name+timeSuffix, append(th.append(nil), te...), false); err != nil {
		return err
	}
	if sync {
		return fs.SyncDir(dir)
	}
	return nil
}

// writeFileAtomic writes data to path.tmp, fsyncs it and renames it over
// path; with syncDir the directory is fsynced too.
func writeFileAtomic(fs vfs.FS, path string, data []byte, syncDir bool) error {
	tmp := path + tmpSuffix
	f, err := fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	if n, err := f.Write(data); err != nil || n != len(data) {
		f.Close()
		if err == nil {
			err = io.ErrShortWrite
		}
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := fs.Rename(tmp, path); err != nil {
		return err
	}
	if syncDir {
		return fs.SyncDir(filepath.Dir(path))
	}
	return nil
}

// Writer writes one new sealed segment (see doc.go, Writing a segment).
type Writer struct {
	fs    vfs.FS
	dir   string
	files *FileCache
	base  int64
	f     vfs.File
	bw    *bufio.Writer
	size  int64
	ix    *indexer
	err   error
}

// Create starts a segment with the given base offset in dir (created if
// needed). Batches are added with Append and published with Finish.
func Create(fs vfs.FS, dir string, files *FileCache, base int64) (*Writer, error) {
	if err := ensureDir(fs, dir); err != nil {
		return nil, err
	}
	f, err := fs.OpenFile(filepath.Join(dir, segmentName(base)+logSuffix+tmpSuffix), os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	// Written behind, so sealing a large segment does not stall the
	// write-ahead log's fsyncs behind its dirty pages.
	bw := bufio.NewWriterSize(vfs.WriteBehind(f, f, 0), 256<<10)
	return &Writer{fs: fs, dir: dir, files: files, base: base, f: f, bw: bw, ix: newIndexer(base)}, nil
}

// Size is the bytes appended so far.
func (w *Writer) Size() int64 { return w.size }

// Append adds one record batch, exactly as stored. Batches must come in
// offset order, starting at or after the segment's base.
func (w *Writer) Append(batch []byte) error {
	if w.err != nil {
		return w.err
	}
	if len(batch) < batchHeaderLen {
		return fmt.Errorf("tier2: append of a %d-byte batch", len(batch))
	}
	h := headerInfo(batch)
	if h.length != int64(len(batch)) || h.base <= w.ix.lastOffset || h.base-w.base > 1<<32-1 || w.size+h.length > 1<<32-1 {
		return fmt.Errorf("tier2: batch at offset %d does not follow offset %d or overflows the segment", h.base, w.ix.lastOffset)
	}
	if _, err := w.bw.Write(batch); err != nil {
		w.err = err
		return err
	}
	w.ix.add(w.size, h)
	w.size += h.length
	return nil
}

// Next is the offset after the last batch appended.
func (w *Writer) Next() int64 { return w.ix.lastOffset + 1 }

// Finish makes the segment durable and visible under its final name; next
// is the offset after the last one it covers (at least Next()).
func (w *Writer) Finish(next int64) (*Segment, error) {
	if w.err != nil {
		w.Abort()
		return nil, w.err
	}
	next = max(next, w.Next())
	fail := func(err error) (*Segment, error) {
		w.Abort()
		return nil, fmt.Errorf("tier2: seal segment %d: %w", w.base, err)
	}
	if err := w.bw.Flush(); err != nil {
		return fail(err)
	}
	if err := w.f.Sync(); err != nil {
		return fail(err)
	}
	if err := w.f.Close(); err != nil {
		w.f = nil
		return fail(err)
	}
	w.f = nil
	if err := writeIndexFiles(w.fs, w.dir, w.base, w.ix, next, w.size, false); err != nil {
		return fail(err)
	}
	name := filepath.Join(w.dir, segmentName(w.base)+logSuffix)
	if err := w.fs.Rename(name+tmpSuffix, name); err != nil {
		return fail(err)
	}
	if err := w.fs.SyncDir(w.dir); err != nil {
		return fail(err)
	}
	s := w.segment(next)
	s.idx, s.tidx, s.loaded = w.ix.idx, w.ix.tidx, true
	return s, nil
}

func (w *Writer) segment(next int64) *Segment {
	maxTs := w.ix.runMax
	if w.ix.lastPos < 0 {
		maxTs = -1
	}
	return &Segment{Base: w.base, Next: next, Size: w.size, MaxTs: maxTs, Created: time.Now().UnixMilli(),
		maxTsPos: w.ix.maxTsPos, lastPos: w.ix.lastPos, dir: w.dir, fs: w.fs, files: w.files}
}

// Abort deletes the unfinished files.
func (w *Writer) Abort() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	name := filepath.Join(w.dir, segmentName(w.base))
	for _, suf := range []string{logSuffix, indexSuffix, timeSuffix} {
		w.fs.Remove(name + suf + tmpSuffix)
	}
}

// WriteLogStart durably records a partition's log start offset in dir.
func WriteLogStart(fs vfs.FS, dir string, logStart int64) error {
	if err := ensureDir(fs, dir); err != nil {
		return err
	}
	p := binary.LittleEndian.AppendUint64(nil, uint64(logStart))
	return writeFileAtomic(fs, filepath.Join(dir, "logstart"), appendCheckpoint(nil, kindLogStart, p), true)
}

// ReadLogStart returns the recorded log start offset; ok is false when there
// is none (a damaged checkpoint is returned as an error wrapping ErrCorrupt).
func ReadLogStart(fs vfs.FS, dir string) (logStart int64, ok bool, err error) {
	b, err := readSmallFile(fs, filepath.Join(dir, "logstart"), 1<<10)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	p, err := parseCheckpoint(b, kindLogStart)
	if err != nil || len(p) != 8 {
		return 0, false, fmt.Errorf("%w: logstart checkpoint: %v", ErrCorrupt, err)
	}
	return int64(binary.LittleEndian.Uint64(p)), true, nil
}

// ProducerBatch is one remembered batch of an idempotent producer.
type ProducerBatch struct {
	FirstSeq, LastSeq int32
	Base              int64
}

// ProducerState is one producer's window, oldest batch first.
type ProducerState struct {
	ID      int64
	Epoch   int16
	Batches []ProducerBatch
}

// TxnRange is one transaction of a producer in a partition: from its
// first record to its marker (Last, -1 while it is open).
type TxnRange struct {
	Producer    int64
	First, Last int64
}

// Txns is a partition's transactions as of a sealed end: those still open
// there, and the aborted ones whose ranges the log still holds.
type Txns struct {
	Open    []TxnRange
	Aborted []TxnRange
}

// WriteProducers durably records the producer windows and transactions as
// of sealedEnd, in one file so both describe the same point of the log.
// The transactions follow the windows; a file written before they were
// kept has none after them, and reads as no transactions.
func WriteProducers(fs vfs.FS, dir string, sealedEnd int64, ps []ProducerState, txns Txns) error {
	p := binary.LittleEndian.AppendUint64(nil, uint64(sealedEnd))
	p = binary.LittleEndian.AppendUint32(p, uint32(len(ps)))
	for _, s := range ps {
		p = binary.LittleEndian.AppendUint64(p, uint64(s.ID))
		p = binary.LittleEndian.AppendUint16(p, uint16(s.Epoch))
		p = append(p, byte(len(s.Batches)))
		for _, b := range s.Batches {
			p = binary.LittleEndian.AppendUint32(p, uint32(b.FirstSeq))
			p = binary.LittleEndian.AppendUint32(p, uint32(b.LastSeq))
			p = binary.LittleEndian.AppendUint64(p, uint64(b.Base))
		}
	}
	for _, list := range [][]TxnRange{txns.Open, txns.Aborted} {
		p = binary.LittleEndian.AppendUint32(p, uint32(len(list)))
		for _, t := range list {
			p = binary.LittleEndian.AppendUint64(p, uint64(t.Producer))
			p = binary.LittleEndian.AppendUint64(p, uint64(t.First))
			p = binary.LittleEndian.AppendUint64(p, uint64(t.Last))
		}
	}
	return writeFileAtomic(fs, filepath.Join(dir, "producers"), appendCheckpoint(nil, kindProducers, p), true)
}

// ReadProducers returns the recorded producer windows and transactions and
// the sealed end offset they describe; ok is false when there is none.
func ReadProducers(fs vfs.FS, dir string) (sealedEnd int64, ps []ProducerState, txns Txns, ok bool, err error) {
	b, err := readSmallFile(fs, filepath.Join(dir, "producers"), maxCkpPayload)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil, txns, false, nil
	}
	if err != nil {
		return 0, nil, txns, false, err
	}
	p, err := parseCheckpoint(b, kindProducers)
	if err != nil {
		return 0, nil, txns, false, err
	}
	bad := fmt.Errorf("%w: producers checkpoint is truncated", ErrCorrupt)
	if len(p) < 12 {
		return 0, nil, txns, false, bad
	}
	sealedEnd = int64(binary.LittleEndian.Uint64(p))
	n := binary.LittleEndian.Uint32(p[8:])
	p = p[12:]
	for i := uint32(0); i < n; i++ {
		if len(p) < 11 {
			return 0, nil, txns, false, bad
		}
		s := ProducerState{ID: int64(binary.LittleEndian.Uint64(p)), Epoch: int16(binary.LittleEndian.Uint16(p[8:]))}
		k := int(p[10])
		p = p[11:]
		if len(p) < k*16 {
			return 0, nil, txns, false, bad
		}
		for j := 0; j < k; j++ {
			s.Batches = append(s.Batches, ProducerBatch{FirstSeq: int32(binary.LittleEndian.Uint32(p)),
				LastSeq: int32(binary.LittleEndian.Uint32(p[4:])), Base: int64(binary.LittleEndian.Uint64(p[8:]))})
			p = p[16:]
		}
		ps = append(ps, s)
	}
	for _, list := range []*[]TxnRange{&txns.Open, &txns.Aborted} {
		if len(p) == 0 {
			break // written before transactions were kept
		}
		if len(p) < 4 {
			return 0, nil, txns, false, bad
		}
		k := int(binary.LittleEndian.Uint32(p))
		p = p[4:]
		if k > len(p)/24 {
			return 0, nil, txns, false, bad
		}
		for range k {
			*list = append(*list, TxnRange{Producer: int64(binary.LittleEndian.Uint64(p)),
				First: int64(binary.LittleEndian.Uint64(p[8:])), Last: int64(binary.LittleEndian.Uint64(p[16:]))})
			p = p[24:]
		}
	}
	return sealedEnd, ps, txns, true, nil
}

// ensureDir creates dir and any missing parents, syncing each parent that
// gained an entry: a segment renamed into a directory whose own entry was
// never synced could vanish with it on power loss, after the WAL copy of its
// batches was trimmed.
func ensureDir(fs vfs.FS, dir string) error {
	if _, err := fs.ReadDir(dir); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := ensureDir(fs, parent); err != nil {
			return err
		}
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return fs.SyncDir(parent)
}

// EpochStart is where a leader epoch's records begin in a partition's log.
type EpochStart struct {
	Epoch int32
	Start int64
}

// WriteLeaderEpochs durably records a partition's leader epochs (Kafka's
// leader-epoch-checkpoint), oldest first.
func WriteLeaderEpochs(fs vfs.FS, dir string, es []EpochStart) error {
	if err := ensureDir(fs, dir); err != nil {
		return err
	}
	p := binary.LittleEndian.AppendUint32(nil, uint32(len(es)))
	for _, e := range es {
		p = binary.LittleEndian.AppendUint32(p, uint32(e.Epoch))
		p = binary.LittleEndian.AppendUint64(p, uint64(e.Start))
	}
	return writeFileAtomic(fs, filepath.Join(dir, "leader-epochs"), appendCheckpoint(nil, kindEpochs, p), true)
}

// ReadLeaderEpochs returns the recorded leader epochs; ok is false when
// there are none.
func ReadLeaderEpochs(fs vfs.FS, dir string) (es []EpochStart, ok bool, err error) {
	b, err := readSmallFile(fs, filepath.Join(dir, "leader-epochs"), maxCkpPayload)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	p, err := parseCheckpoint(b, kindEpochs)
	if err != nil || len(p) < 4 {
		return nil, false, fmt.Errorf("%w: leader epochs checkpoint: %v", ErrCorrupt, err)
	}
	n := int(binary.LittleEndian.Uint32(p))
	p = p[4:]
	if len(p) != n*12 {
		return nil, false, fmt.Errorf("%w: leader epochs checkpoint length", ErrCorrupt)
	}
	for i := 0; i < n; i++ {
		es = append(es, EpochStart{Epoch: int32(binary.LittleEndian.Uint32(p[i*12:])), Start: int64(binary.LittleEndian.Uint64(p[i*12+4:]))})
	}
	return es, true, nil
}
