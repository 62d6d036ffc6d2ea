package tier2

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/chronik-go/chronik/internal/vfs"
)

// LoadReport says what Load found in one partition directory.
type LoadReport struct {
	Segments int
	Rebuilt  int // segments whose indexes were rebuilt from the log
	Damaged  int // segments whose log failed a check: kept as they are (Segment.Damage)
	Removed  int // unfinished (.tmp) or orphan files deleted
}

// Load opens the sealed segments in dir (see doc.go, Startup validation), in
// offset order. A missing dir holds no segments. A damaged segment is
// returned with its damage recorded (Segment.Damage) and its files
// untouched; when its index headers were lost too, the caller resolves its
// end (Segment.ResolveNext).
func Load(fs vfs.FS, dir string, files *FileCache, log *slog.Logger) ([]*Segment, LoadReport, error) {
	var rep LoadReport
	ents, err := fs.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, rep, nil
	}
	if err != nil {
		return nil, rep, fmt.Errorf("tier2: list %s: %w", dir, err)
	}
	logs := map[int64]bool{}
	archived := map[int64]bool{}
	var others []string
	for _, e := range ents {
		n := e.Name()
		if base, ok := parseSegmentName(n, logSuffix); ok {
			logs[base] = true
		} else if base, ok := parseSegmentName(n, archivedSuffix); ok {
			archived[base] = true
		} else {
			others = append(others, n)
		}
	}
	removed := false
	for _, n := range others {
		orphan := false
		if strings.HasSuffix(n, tmpSuffix) {
			orphan = true
		} else if base, ok := parseSegmentName(n, indexSuffix); ok && !logs[base] {
			orphan = true
		} else if base, ok := parseSegmentName(n, timeSuffix); ok && !logs[base] {
			orphan = true
		}
		if orphan {
			if err := fs.Remove(filepath.Join(dir, n)); err != nil {
				return nil, rep, fmt.Errorf("tier2: remove unfinished %s: %w", n, err)
			}
			rep.Removed++
			removed = true
		}
	}
	if removed || len(logs) > 0 {
		// A segment renamed into place just before a kill -9 may have a
		// directory entry that was never synced; the WAL copy of its
		// batches is trimmed once the segment loads, so make it durable.
		if err := fs.SyncDir(dir); err != nil {
			return nil, rep, err
		}
	}
	bases := make([]int64, 0, len(logs))
	for b := range logs {
		bases = append(bases, b)
	}
	slices.Sort(bases)
	segs := make([]*Segment, 0, len(bases))
	for _, base := range bases {
		s, rebuilt, err := loadSegment(fs, dir, files, base, log)
		if err != nil {
			return nil, rep, err
		}
		if rebuilt {
			rep.Rebuilt++
		}
		if s.Damage() != nil {
			rep.Damaged++
		}
		s.archived.Store(archived[base])
		if n := len(segs); n > 0 && segs[n-1].Next > s.Base {
			log.Error("sealed segments overlap; the later one is not served", "dir", dir, "base", s.Base, "previous_next", segs[n-1].Next)
			continue
		}
		segs = append(segs, s)
	}
	rep.Segments = len(segs)
	return segs, rep, nil
}

func loadSegment(fs vfs.FS, dir string, files *FileCache, base int64, log *slog.Logger) (s *Segment, rebuilt bool, err error) {
	name := filepath.Join(dir, segmentName(base))
	f, err := fs.OpenFile(name+logSuffix, os.O_RDONLY, 0)
	if err != nil {
		return nil, false, fmt.Errorf("tier2: open %s: %w", name+logSuffix, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	size := fi.Size()
	s = &Segment{Base: base, Size: size, Created: fi.ModTime().UnixMilli(), dir: dir, fs: fs, files: files}

	oh, err1 := readIndexHeader(fs, name+indexSuffix)
	th, err2 := readIndexHeader(fs, name+timeSuffix)
	reason := ""
	switch {
	case err1 != nil:
		reason = "offset index: " + err1.Error()
	case err2 != nil:
		reason = "time index: " + err2.Error()
	case oh.kind != kindOffset || th.kind != kindTime:
		reason = "index kind mismatch"
	case oh.base != base || th.base != base || oh.logSize != size || th.logSize != size ||
		oh.next != th.next || oh.lastPos != th.lastPos || oh.maxTs != th.maxTs:
		reason = "index headers do not match the log"
	}
	if reason == "" && size > 0 {
		if last, err := readBatch(f, oh.lastPos, size, nil); err != nil {
			reason = "last batch: " + err.Error()
		} else if oh.lastPos+int64(len(last)) != size {
			reason = "last batch does not end the log"
		}
	}
	if reason == "" {
		s.Next, s.MaxTs, s.maxTsPos, s.lastPos = oh.next, oh.maxTs, oh.maxTsPos, oh.lastPos
		return s, false, nil
	}

	// A header that passed its own checks still says what the segment
	// was written as (its end above all), even if it disagrees with the
	// log: the time index's serves when the offset index's is lost.
	hdr, hdrOK := oh, err1 == nil && oh.kind == kindOffset && oh.base == base
	if !hdrOK {
		hdr, hdrOK = th, err2 == nil && th.kind == kindTime && th.base == base
	}
	log.Warn("checking a sealed segment whose index fails its checks", "segment", name+logSuffix, "reason", reason)
	ix := newIndexer(base)
	limit := int64(math.MaxInt64)
	if hdrOK {
		limit = hdr.next
	}
	end, scanErr := scanLog(f, size, ix, limit)
	verified := ix.lastOffset + 1
	if scanErr == nil && hdrOK && size < hdr.logSize {
		// Every batch is whole, but the log is shorter than it was
		// written: its tail is gone. (A log longer than its header says is
		// the old log of a compaction or repair that crashed between
		// renaming the new indexes and the new log: complete and valid.)
		scanErr = fmt.Errorf("%w: the log is %d bytes, its index header recorded %d", ErrCorrupt, size, hdr.logSize)
	}
	if scanErr != nil {
		// Damage: logs are renamed into place complete, so a bad batch is
		// never a torn write. The log is kept as it is for its repair;
		// the segment keeps the end its header recorded, and serves its
		// verified prefix.
		d := &DamageError{Path: name + logSuffix, Base: base, Next: verified, Pos: end, Offset: verified,
			HeaderLost: !hdrOK, Reason: strings.TrimPrefix(scanErr.Error(), ErrCorrupt.Error()+": ")}
		s.MaxTs, s.maxTsPos, s.lastPos = ix.runMax, ix.maxTsPos, ix.lastPos
		if ix.lastPos < 0 {
			s.MaxTs = -1
		}
		if hdrOK {
			d.Next = max(hdr.next, verified)
			s.MaxTs, s.maxTsPos = max(hdr.maxTs, s.MaxTs), hdr.maxTsPos
		}
		s.Next = d.Next
		s.idx, s.tidx, s.loaded = ix.idx, ix.tidx, true
		s.damage.Store(d)
		log.Error("sealed segment is damaged; its verified prefix is served and the rest waits for a repair",
			"segment", name+logSuffix, "damaged_at_byte", end, "first_unverified_offset", verified, "next", d.Next,
			"end_known", hdrOK, "err", scanErr)
		return s, false, nil
	}
	next := verified
	if hdrOK && hdr.next > next {
		next = hdr.next
	}
	if err := writeIndexFiles(fs, dir, base, ix, next, size, true); err != nil {
		return nil, false, fmt.Errorf("tier2: rewrite index of %s: %w", name, err)
	}
	maxTs := ix.runMax
	if ix.lastPos < 0 {
		maxTs = -1
	}
	s.Next, s.MaxTs, s.maxTsPos, s.lastPos = next, maxTs, ix.maxTsPos, ix.lastPos
	s.idx, s.tidx, s.loaded = ix.idx, ix.tidx, true
	return s, true, nil
}

func readIndexHeader(fs vfs.FS, path string) (indexHeader, error) {
	f, err := fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return indexHeader{}, err
	}
	defer f.Close()
	var b [idxHeaderSize]byte
	if err := readFull(f, b[:], 0); err != nil {
		return indexHeader{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return parseIndexHeader(b[:])
}

// scanLog verifies every batch of a log and indexes it; it returns the end
// of the valid prefix and the first failure. Batches must lie below next
// and within the u32 relative offsets the index holds.
func scanLog(f vfs.File, size int64, ix *indexer, next int64) (int64, error) {
	var buf []byte
	pos := int64(0)
	for pos < size {
		var err error
		buf, err = readBatch(f, pos, size, buf[:0])
		if err != nil {
			return pos, err
		}
		h := headerInfo(buf)
		switch {
		case h.base <= ix.lastOffset || h.lastDelta < 0:
			return pos, fmt.Errorf("%w: batch offset %d after %d", ErrCorrupt, h.base, ix.lastOffset)
		case h.last() >= next || h.base-ix.base > math.MaxUint32:
			return pos, fmt.Errorf("%w: batch %d-%d lies outside the segment at %d", ErrCorrupt, h.base, h.last(), ix.base)
		}
		ix.add(pos, h)
		pos += h.length
	}
	return pos, nil
}
