package tier2

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/chronik-go/chronik/internal/vfs"
)

// LoadReport says what Load found in one partition directory.
type LoadReport struct {
	Segments  int
	Rebuilt   int   // segments whose indexes were rebuilt from the log
	Truncated int64 // damaged log bytes cut off
	Removed   int   // unfinished (.tmp) or orphan files deleted
}

// Load opens the sealed segments in dir (see doc.go, Startup validation), in
// offset order. A missing dir holds no segments.
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
		s, rebuilt, cut, err := loadSegment(fs, dir, files, base, log)
		if err != nil {
			return nil, rep, err
		}
		if rebuilt {
			rep.Rebuilt++
		}
		rep.Truncated += cut
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

func loadSegment(fs vfs.FS, dir string, files *FileCache, base int64, log *slog.Logger) (s *Segment, rebuilt bool, cut int64, err error) {
	name := filepath.Join(dir, segmentName(base))
	f, err := fs.OpenFile(name+logSuffix, os.O_RDONLY, 0)
	if err != nil {
		return nil, false, 0, fmt.Errorf("tier2: open %s: %w", name+logSuffix, err)
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, 0, err
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
		return s, false, 0, nil
	}

	log.Warn("rebuilding segment index", "segment", name+logSuffix, "reason", reason)
	ix := newIndexer(base)
	end, scanErr := scanLog(f, size, ix)
	if scanErr != nil {
		log.Error("sealed segment is damaged; truncating it at the last valid batch", "segment", name+logSuffix,
			"offset", end, "bytes", size-end, "err", scanErr)
		f.Close()
		f = nil
		wf, err := fs.OpenFile(name+logSuffix, os.O_RDWR, 0)
		if err != nil {
			return nil, false, 0, err
		}
		if err := wf.Truncate(end); err == nil {
			err = wf.Sync()
		}
		wf.Close()
		if err != nil {
			return nil, false, 0, fmt.Errorf("tier2: truncate %s: %w", name+logSuffix, err)
		}
		cut = size - end
		size = end
	}
	next := ix.lastOffset + 1
	if err1 == nil && oh.base == base && oh.next > next {
		next = oh.next
	}
	if err := writeIndexFiles(fs, dir, base, ix, next, size, true); err != nil {
		return nil, false, 0, fmt.Errorf("tier2: rewrite index of %s: %w", name, err)
	}
	maxTs := ix.runMax
	if ix.lastPos < 0 {
		maxTs = -1
	}
	s.Size, s.Next, s.MaxTs, s.maxTsPos, s.lastPos = size, next, maxTs, ix.maxTsPos, ix.lastPos
	s.idx, s.tidx, s.loaded = ix.idx, ix.tidx, true
	return s, true, cut, nil
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
// of the valid prefix and the first failure.
func scanLog(f vfs.File, size int64, ix *indexer) (int64, error) {
	var buf []byte
	pos := int64(0)
	for pos < size {
		var err error
		buf, err = readBatch(f, pos, size, buf[:0])
		if err != nil {
			return pos, err
		}
		h := headerInfo(buf)
		if h.base <= ix.lastOffset {
			return pos, fmt.Errorf("%w: batch offset %d after %d", ErrCorrupt, h.base, ix.lastOffset)
		}
		ix.add(pos, h)
		pos += h.length
	}
	return pos, nil
}
