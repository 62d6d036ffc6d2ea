package tier1

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// recover scans every segment (doc.go, Recovery), registers the readable
// ones in w.segments and leaves w.active ready for appends.
func (w *WAL) recover(replay ReplayFunc) (RecoveryReport, error) {
	var rep RecoveryReport
	if err := w.ensureDir(); err != nil {
		return rep, fmt.Errorf("tier1: create wal dir: %w", err)
	}
	ents, err := w.fs.ReadDir(w.dir)
	if err != nil {
		return rep, fmt.Errorf("tier1: list wal dir: %w", err)
	}
	var seqs []uint64
	for _, e := range ents {
		if seq, ok := parseSegmentName(e.Name()); ok && !e.IsDir() {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)

	next := uint64(1) // sequence number for a new segment
	for i, seq := range seqs {
		if i > 0 && seq != seqs[i-1]+1 {
			w.corrupt(&rep, CorruptRange{Segment: seqs[i-1] + 1,
				Reason: fmt.Sprintf("segments %d to %d are missing", seqs[i-1]+1, seq-1)})
		}
		kept, err := w.recoverSegment(seq, i == len(seqs)-1, replay, &rep)
		if err != nil {
			return rep, err
		}
		if kept {
			next = seq + 1
		}
	}
	if w.active == nil {
		seg, err := w.createSegment(next)
		if err != nil {
			return rep, fmt.Errorf("tier1: %w", err)
		}
		w.segments[seg.seq] = seg
		w.active = seg
	}
	rep.Segments = len(w.segments)
	return rep, nil
}

// ensureDir creates w.dir if needed and makes every directory it created
// durable in its parent, so acked entries cannot vanish with their
// directory.
func (w *WAL) ensureDir() error {
	var created []string
	for d := filepath.Clean(w.dir); ; d = filepath.Dir(d) {
		_, err := w.fs.ReadDir(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		created = append(created, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if len(created) == 0 {
		return nil
	}
	if err := w.fs.MkdirAll(w.dir, 0o755); err != nil {
		return err
	}
	for _, d := range created {
		if err := w.fs.SyncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

// recoverSegment scans one segment. kept reports whether the file stays in
// the directory (a torn creation is removed). The last segment, if its
// header is sound, becomes w.active after its torn tail is cut off.
func (w *WAL) recoverSegment(seq uint64, last bool, replay ReplayFunc, rep *RecoveryReport) (kept bool, err error) {
	path := filepath.Join(w.dir, segmentName(seq))
	flag := os.O_RDONLY
	if last {
		flag = os.O_RDWR | os.O_APPEND
	}
	f, err := w.fs.OpenFile(path, flag, 0)
	if err != nil {
		return false, fmt.Errorf("tier1: open segment: %w", err)
	}
	seg := &segment{seq: seq, f: f}
	defer func() {
		if w.segments[seq] != seg {
			f.Close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("tier1: stat segment %d: %w", seq, err)
	}
	size := fi.Size()
	replayFailed := false
	res, err := scanSegment(f, size, seq, func(e Entry) error {
		rep.Entries++
		if replay == nil {
			return nil
		}
		if err := replay(e); err != nil {
			replayFailed = true
			return fmt.Errorf("tier1: replay: %w", err)
		}
		return nil
	})
	switch {
	case err == nil:
	case replayFailed:
		return false, err
	case errors.Is(err, ErrUnsupported):
		return false, fmt.Errorf("%w (segment %d)", err, seq)
	default:
		return false, fmt.Errorf("tier1: scan segment %d: %w", seq, err)
	}

	if res.headerReason != "" {
		if last && size <= segHeaderSize {
			// Created but never synced; no frame was written to it yet.
			w.log.Warn("removing segment torn while being created", "segment", seq, "bytes", size)
			if err := w.fs.Remove(path); err != nil {
				return false, fmt.Errorf("tier1: remove torn segment: %w", err)
			}
			if err := w.fs.SyncDir(w.dir); err != nil {
				return false, fmt.Errorf("tier1: sync wal dir: %w", err)
			}
			rep.TruncatedBytes += size
			return false, nil
		}
		w.corrupt(rep, CorruptRange{Segment: seq, Reason: res.headerReason + "; segment skipped"})
		return true, nil
	}

	seg.salt = res.salt
	for _, b := range res.corrupt {
		w.corrupt(rep, CorruptRange{Segment: seq, Offset: b.off,
			Reason: fmt.Sprintf("%s; %d bytes skipped", b.reason, b.end-b.off)})
	}
	end := res.validEnd
	if last && end != size {
		// The torn tail (or a last frame's missing padding, when end > size).
		if end < size {
			w.log.Warn("truncating torn tail", "segment", seq, "offset", end,
				"bytes", size-end, "reason", res.tailReason)
			rep.TruncatedBytes += size - end
		}
		if err := f.Truncate(end); err != nil {
			return false, fmt.Errorf("tier1: truncate segment %d: %w", seq, err)
		}
		size = end
	}
	if last {
		// After a kill -9 the last frames may sit only in the page cache:
		// they pass their CRCs, so make them durable before anything is
		// served or acknowledged from them.
		if err := f.Sync(); err != nil {
			return false, fmt.Errorf("tier1: fsync segment %d: %w", seq, err)
		}
	}
	if end < size {
		w.corrupt(rep, CorruptRange{Segment: seq, Offset: end,
			Reason: fmt.Sprintf("%s; last %d bytes of a sealed segment skipped", res.tailReason, size-end)})
	}
	seg.size = size
	seg.end.Store(min(end, size))
	w.segments[seq] = seg
	if last {
		w.active = seg
	}
	return true, nil
}

func (w *WAL) corrupt(rep *RecoveryReport, c CorruptRange) {
	w.log.Warn("corrupt wal bytes will not be served", "segment", c.Segment, "offset", c.Offset, "reason", c.Reason)
	rep.Corruptions = append(rep.Corruptions, c)
}

// createSegment creates segment seq with a fresh salt and makes the file,
// its header and its directory entry durable before any frame goes in.
func (w *WAL) createSegment(seq uint64) (*segment, error) {
	var salt [8]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return nil, fmt.Errorf("segment salt: %w", err)
	}
	s := &segment{seq: seq, salt: binary.LittleEndian.Uint64(salt[:])}
	path := filepath.Join(w.dir, segmentName(seq))
	f, err := w.fs.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return nil, undoable{fmt.Errorf("create segment: %w", err)}
	}
	// A segment that could not be made whole is removed, so the next try
	// (after a full disk, say) can create it again. If it cannot be
	// removed, that next try would fail: the error is then not undoable.
	abandon := func(err error) (*segment, error) {
		f.Close()
		if rerr := w.fs.Remove(path); rerr != nil {
			return nil, fmt.Errorf("%v (removing it: %w)", err, rerr)
		}
		return nil, err
	}
	hdr := appendSegHeader(make([]byte, 0, segHeaderSize), seq, s.salt)
	if n, err := f.Write(hdr); err != nil || n != len(hdr) {
		if err == nil {
			err = io.ErrShortWrite
		}
		return abandon(undoable{fmt.Errorf("write segment %d header: %w", seq, err)})
	}
	if err := f.Sync(); err != nil {
		return abandon(fmt.Errorf("fsync segment %d: %w", seq, err))
	}
	if err := w.fs.SyncDir(w.dir); err != nil {
		return abandon(fmt.Errorf("sync wal dir: %w", err))
	}
	s.f = f
	s.size = segHeaderSize
	s.end.Store(segHeaderSize)
	return s, nil
}
