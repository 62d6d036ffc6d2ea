package tier1

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/chronik-go/chronik/internal/vfs"
)

// WAL is the group-commit write-ahead log. Append, ReadAt and Stats are safe
// for concurrent use; one goroutine started by Open writes every segment.
type WAL struct {
	dir           string
	fs            vfs.FS
	profile       Profile
	fsync         FsyncMode
	segBytes      int64
	maxGroupBytes int64
	log           *slog.Logger
	onGroup       func(entries int, bytes int64, fsync time.Duration) // nil: none
	onFailed      func(error)                                         // nil: none

	mu sync.Mutex // guards the following
	// queue holds accepted appends the commit goroutine has not taken yet.
	// Invariant: when non-empty, len(queue) <= QueueDepth and
	// queueBytes <= MemoryBytes, except that one entry is always admitted
	// into an empty queue.
	queue      []pending
	queueBytes int64
	room       chan struct{} // closed when room frees up; nil while nobody waits
	closed     bool
	err        error // sticky; wraps ErrFailed
	// fenced holds the partitions whose appends failed with ErrDiskFull:
	// their callers must take back the offsets they assigned before
	// appending again (Reset).
	fenced map[TopicPartition]error

	wake   chan struct{} // capacity 1: nudges an idle commit goroutine
	exited chan struct{} // closed when the commit goroutine returns

	// Owned by the commit goroutine (and by Open before it starts).
	active *segment
	group  []pending // entries being committed
	buf    []byte    // encoded frames of the group
	pos    []Position
	// groupBytes and groupFsync describe the group being committed, for
	// onGroup.
	groupBytes int64
	groupFsync time.Duration
	// Where the group started (segment and size) and the segments it
	// created, to undo it after ENOSPC.
	groupSeg  *segment
	groupSize int64
	groupNew  []*segment
	// fullGroups counts groups failed on a full disk since the last one
	// written, so the log says when it began and when it ended.
	fullGroups int

	// ReadAt holds segMu.RLock across its pread so Close cannot close a file
	// under it; the commit goroutine takes the write lock only to add a
	// segment at a roll.
	segMu    sync.RWMutex        // guards the following
	segments map[uint64]*segment // every readable segment; nil once closed

	// published is the active segment as of the last group whose done
	// callbacks have all run. Invariant: every entry in a segment below it
	// has been handed to its callback, so a caller that tracks positions
	// from callbacks knows about every entry there. A group that rolls
	// mid-way opens the next segment before its callbacks run, so the
	// newest segment alone would not do for trimming.
	published atomic.Uint64

	stats struct {
		queueDepth   atomic.Int64
		queueBytes   atomic.Int64
		groups       atomic.Uint64
		appends      atomic.Uint64
		bytesWritten atomic.Uint64
		fsyncNanos   atomic.Uint64
		backpressure atomic.Uint64
		fullGroups   atomic.Uint64
		full         atomic.Bool
	}
}

// pending is an accepted append, of either entry type.
// Invariant: typ is entryTypeBatch or entryTypeTrunc, and a truncation's
// body is exactly truncBodySize bytes (appendTruncBody) that the WAL owns.
type pending struct {
	typ  byte
	tp   TopicPartition
	body []byte // the batch, or the truncation offset; the frame's body
	done DoneFunc
}

type segment struct {
	seq  uint64
	salt uint64
	f    vfs.File
	// end bounds what ReadAt serves: bytes up to here are fsynced
	// (FsyncAlways) or written (FsyncNever).
	end atomic.Int64
	// size is the file size as written; owned by the commit goroutine.
	size int64
}

// Open recovers the WAL in cfg.Dir, calling replay for every verified entry
// in log order (see doc.go, Recovery), and starts the commit goroutine. A
// replay error aborts Open and is returned.
func Open(cfg Config, replay ReplayFunc) (*WAL, RecoveryReport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, RecoveryReport{}, err
	}
	w := &WAL{
		dir:           cfg.Dir,
		fs:            cfg.FS,
		profile:       cfg.Profile,
		fsync:         cfg.Fsync,
		segBytes:      cfg.SegmentBytes,
		maxGroupBytes: min(cfg.Profile.MemoryBytes, maxGroupBytes),
		log:           cfg.Logger.With("component", "tier1", "dir", cfg.Dir),
		onGroup:       cfg.OnGroup,
		onFailed:      cfg.OnFailed,
		wake:          make(chan struct{}, 1),
		exited:        make(chan struct{}),
		segments:      make(map[uint64]*segment),
		fenced:        make(map[TopicPartition]error),
	}
	rep, err := w.recover(replay)
	if err != nil {
		w.closeSegments()
		return nil, rep, err
	}
	w.published.Store(w.active.seq)
	go w.run()
	return w, rep, nil
}

// Profile returns the profile in effect, Config.MaxWait applied.
func (w *WAL) Profile() Profile { return w.profile }

// Append queues batch for tp and returns once it is queued; done reports
// durability later. It blocks while the queue is full (QueueDepth entries or
// MemoryBytes bytes) until room frees up or ctx is done, and reports in
// waited whether it had to. A batch is admitted into an empty queue whatever
// its size, so one large batch cannot block forever.
//
// batch must stay valid and unmodified until done is called. If Append
// returns an error, done is never called; otherwise it is called exactly
// once. Appends are written in the order Append accepts them. Blocked
// appenders are not served in arrival order.
func (w *WAL) Append(ctx context.Context, tp TopicPartition, batch []byte, done DoneFunc) (waited bool, err error) {
	if len(batch) > MaxBatchBytes {
		return false, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(batch), MaxBatchBytes)
	}
	return w.enqueue(ctx, pending{typ: entryTypeBatch, tp: tp, body: batch, done: done})
}

// AppendTruncation queues a truncation entry for tp (doc.go, Entry types):
// replay hands it back at its place in log order as an EntryTruncation, so
// the owner can cut tp's unsealed records at or above offset again. It is
// queued, grouped, fsynced, acknowledged, failed, fenced and undone exactly
// like an Append of an 8-byte batch, with the same contract for done and
// waited; done's Position locates the entry but is not one ReadAt serves.
// offset must not be negative.
func (w *WAL) AppendTruncation(ctx context.Context, tp TopicPartition, offset int64, done DoneFunc) (waited bool, err error) {
	if offset < 0 {
		return false, fmt.Errorf("tier1: truncation to negative offset %d", offset)
	}
	body := appendTruncBody(make([]byte, 0, truncBodySize), offset)
	return w.enqueue(ctx, pending{typ: entryTypeTrunc, tp: tp, body: body, done: done})
}

// enqueue is Append and AppendTruncation after their argument checks.
func (w *WAL) enqueue(ctx context.Context, e pending) (waited bool, err error) {
	tp, n := e.tp, int64(len(e.body))
	w.mu.Lock()
	for {
		if w.closed {
			w.mu.Unlock()
			return waited, ErrClosed
		}
		if w.err != nil {
			err := w.err
			w.mu.Unlock()
			return waited, err
		}
		if err := w.fenced[tp]; err != nil {
			w.mu.Unlock()
			return waited, err
		}
		if len(w.queue) == 0 || (len(w.queue) < w.profile.QueueDepth && w.queueBytes+n <= w.profile.MemoryBytes) {
			break
		}
		if !waited {
			waited = true
			w.stats.backpressure.Add(1)
		}
		if w.room == nil {
			w.room = make(chan struct{})
		}
		room := w.room
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return waited, ctx.Err()
		case <-room:
		}
		w.mu.Lock()
	}
	wasEmpty := len(w.queue) == 0
	w.queue = append(w.queue, e)
	w.queueBytes += n
	w.stats.queueDepth.Store(int64(len(w.queue)))
	w.stats.queueBytes.Store(w.queueBytes)
	w.mu.Unlock()
	if wasEmpty {
		w.nudge()
	}
	return waited, nil
}

// Reset lets tp append again after an ErrDiskFull, once its caller has
// taken back what it assigned to the failed appends. None of them is in
// the WAL any more, though some of their callbacks may still be about to
// run: the caller must tell those apart from failures of later appends.
func (w *WAL) Reset(tp TopicPartition) {
	w.mu.Lock()
	delete(w.fenced, tp)
	w.mu.Unlock()
}

func (w *WAL) nudge() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run is the commit goroutine.
func (w *WAL) run() {
	defer close(w.exited)
	for w.takeGroup() {
		w.finishGroup(w.writeGroup())
	}
}

// takeGroup moves up to MaxGroup queued entries (and maxGroupBytes) into
// w.group, waiting for the first one. It returns false once the WAL is closed
// and drained, or failed.
func (w *WAL) takeGroup() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.queue) == 0 {
		if w.closed || w.err != nil {
			return false
		}
		w.mu.Unlock()
		<-w.wake
		w.mu.Lock()
	}
	n, bytes := 0, int64(0)
	for n < len(w.queue) && n < w.profile.MaxGroup {
		b := int64(len(w.queue[n].body))
		if n > 0 && bytes+b > w.maxGroupBytes {
			break
		}
		bytes += b
		n++
	}
	if n == len(w.queue) {
		w.group, w.queue = w.queue, w.group[:0]
	} else {
		w.group = append(w.group[:0], w.queue[:n]...)
		rest := copy(w.queue, w.queue[n:])
		clear(w.queue[rest:])
		w.queue = w.queue[:rest]
	}
	w.queueBytes -= bytes
	w.groupBytes, w.groupFsync = bytes, 0
	w.stats.queueDepth.Store(int64(len(w.queue)))
	w.stats.queueBytes.Store(w.queueBytes)
	if w.room != nil {
		close(w.room)
		w.room = nil
	}
	return true
}

// writeGroup encodes w.group into frames and makes them durable (or, under
// FsyncNever, written): one write and one fsync unless the group crosses a
// segment roll.
func (w *WAL) writeGroup() error {
	seg := w.active
	need := 0
	for i := range w.group {
		need += int(frameSize(len(w.group[i].body)))
	}
	buf, pos := slices.Grow(w.buf[:0], need), w.pos[:0]
	w.groupSeg, w.groupSize, w.groupNew = seg, seg.size, w.groupNew[:0]
	off := seg.size
	for i := range w.group {
		e := &w.group[i]
		size := frameSize(len(e.body))
		if off > segHeaderSize && off+size > w.segBytes {
			// Seal: the segment must be complete on disk before its
			// successor exists, whatever the fsync mode.
			if err := w.flush(seg, buf, true); err != nil {
				return err
			}
			next, err := w.createSegment(seg.seq + 1)
			if err != nil {
				return err
			}
			w.groupNew = append(w.groupNew, next)
			w.segMu.Lock()
			w.segments[next.seq] = next
			w.segMu.Unlock()
			w.active, seg = next, next
			off, buf = seg.size, buf[:0]
		}
		buf = appendFrame(buf, seg.salt, off, e.typ, e.tp, e.body)
		pos = append(pos, Position{Segment: seg.seq, Offset: off + batchOffset, Len: int32(len(e.body))})
		off += size
	}
	w.buf, w.pos = buf, pos
	return w.flush(seg, buf, w.fsync == FsyncAlways)
}

// flush appends buf to seg and optionally fsyncs it, then lets ReadAt see
// the new bytes.
func (w *WAL) flush(seg *segment, buf []byte, sync bool) error {
	if len(buf) > 0 {
		n, err := seg.f.Write(buf)
		seg.size += int64(n)
		w.stats.bytesWritten.Add(uint64(n))
		if err == nil && n < len(buf) {
			err = io.ErrShortWrite
		}
		if err != nil {
			return undoable{fmt.Errorf("write segment %d: %w", seg.seq, err)}
		}
	}
	if sync {
		start := time.Now()
		err := seg.f.Sync()
		took := time.Since(start)
		w.stats.fsyncNanos.Add(uint64(took))
		w.groupFsync += took
		if err != nil {
			return fmt.Errorf("fsync segment %d: %w", seg.seq, err)
		}
	}
	seg.end.Store(seg.size)
	return nil
}

// finishGroup completes every waiter of w.group. On error the WAL fails for
// good: the group and everything queued fail with the sticky error.
func (w *WAL) finishGroup(err error) {
	group := w.group
	if err == nil {
		if w.onGroup != nil {
			w.onGroup(len(group), w.groupBytes, w.groupFsync)
		}
		if w.fullGroups > 0 {
			w.log.Info("wal appends succeed again after a full disk", "failed_groups", w.fullGroups)
			w.fullGroups = 0
			w.stats.full.Store(false)
		}
		// Count before acknowledging: whoever saw its ack sees it counted.
		w.stats.groups.Add(1)
		w.stats.appends.Add(uint64(len(group)))
		for i := range group {
			if d := group[i].done; d != nil {
				d(w.pos[i], nil)
			}
		}
		w.published.Store(w.active.seq)
		clear(group)
		return
	}
	if isDiskFull(err) {
		uerr := w.undoGroup()
		if uerr == nil {
			err = fmt.Errorf("%w: %w", ErrDiskFull, err)
			w.stats.fullGroups.Add(1)
			w.stats.full.Store(true)
			queued := w.failPending(err, false)
			if w.fullGroups++; w.fullGroups == 1 {
				w.log.Warn("wal appends fail: the disk is full; each failed group is undone, and appends succeed again once there is space",
					"err", err, "group", len(group), "queued", queued)
			}
			return
		}
		err = fmt.Errorf("%w (undoing the group: %w)", err, uerr)
	}
	err = fmt.Errorf("%w: %w", ErrFailed, err)
	queued := w.failPending(err, true)
	w.log.Error("wal failed; every later append fails until it is reopened",
		"err", err, "group", len(group), "queued", queued)
	if w.onFailed != nil {
		w.onFailed(err)
	}
}

// failPending fails the group and everything queued with err, and returns
// how many were queued. sticky keeps err for every later Append (the WAL
// has failed); otherwise (ErrDiskFull) only the failed entries' partitions
// are fenced until Reset, since their queued appends may follow the failed
// ones.
func (w *WAL) failPending(err error, sticky bool) int {
	group := w.group
	w.mu.Lock()
	queued := w.queue
	w.queue, w.queueBytes = nil, 0
	w.stats.queueDepth.Store(0)
	w.stats.queueBytes.Store(0)
	if w.room != nil {
		close(w.room)
		w.room = nil
	}
	if sticky {
		w.err = err
	} else {
		for _, q := range [][]pending{group, queued} {
			for i := range q {
				w.fenced[q[i].tp] = err
			}
		}
	}
	w.mu.Unlock()
	for _, q := range [][]pending{group, queued} {
		for i := range q {
			if d := q[i].done; d != nil {
				d(Position{}, err)
			}
		}
	}
	clear(group)
	return len(queued)
}

// undoable marks an error of a write or of a file creation, as opposed to
// an fsync: the group can be undone if it failed for want of space.
type undoable struct{ error }

func (u undoable) Unwrap() error { return u.error }

// isDiskFull reports a write or a file creation that failed for want of
// space (or of inodes, or quota). Never an fsync: after a failed fsync the
// kernel may have dropped dirty pages of earlier groups too (see doc.go),
// so that stays fatal whatever its errno.
func isDiskFull(err error) bool {
	var u undoable
	return errors.As(err, &u) && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT))
}

// undoGroup removes what the failed group wrote: the segments it created,
// and its frames in the segment it started in, which becomes active again.
// The truncation is fsynced, so no frame of the group can come back at
// recovery; the bytes before it were durable before the group began.
func (w *WAL) undoGroup() error {
	// Newest first: a crash part-way leaves no hole in the sequence.
	for _, s := range slices.Backward(w.groupNew) {
		w.segMu.Lock()
		delete(w.segments, s.seq)
		w.segMu.Unlock()
		s.f.Close()
		if err := w.fs.Remove(filepath.Join(w.dir, segmentName(s.seq))); err != nil {
			return err
		}
	}
	if len(w.groupNew) > 0 {
		if err := w.fs.SyncDir(w.dir); err != nil {
			return err
		}
	}
	seg := w.groupSeg
	w.active = seg
	if err := seg.f.Truncate(w.groupSize); err != nil {
		return err
	}
	if err := seg.f.Sync(); err != nil {
		return err
	}
	seg.size = w.groupSize
	seg.end.Store(w.groupSize)
	return nil
}

// ReadAt appends the batch bytes at pos to dst, after verifying the frame
// that holds them. pos must have come from a DoneFunc or ReplayFunc of this
// WAL or an earlier one on the same directory, for a batch: a truncation's
// position yields ErrBadPosition.
func (w *WAL) ReadAt(pos Position, dst []byte) ([]byte, error) {
	frameOff := pos.Offset - batchOffset
	if pos.Len < 0 || frameOff < segHeaderSize || frameOff%frameAlign != 0 {
		return dst, fmt.Errorf("%w: %+v", ErrBadPosition, pos)
	}
	w.segMu.RLock()
	defer w.segMu.RUnlock()
	if w.segments == nil {
		return dst, ErrClosed
	}
	seg := w.segments[pos.Segment]
	if seg == nil || pos.Offset+int64(pos.Len) > seg.end.Load() {
		return dst, fmt.Errorf("%w: %+v", ErrBadPosition, pos)
	}
	start, n := len(dst), batchOffset+int(pos.Len)
	dst = slices.Grow(dst, n)[:start+n]
	f := dst[start:]
	if got, err := seg.f.ReadAt(f, frameOff); got < n {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return dst[:start], fmt.Errorf("tier1: read segment %d at %d: %w", seg.seq, frameOff, err)
	}
	flen, reason := frameLen(f, seg.salt, int64(n))
	if reason == "" && flen != int64(n) {
		reason = "frame length does not match position"
	}
	if reason == "" {
		var err error
		if reason, err = checkFrame(seg.salt, frameOff, f); err != nil {
			reason = err.Error()
		}
	}
	if reason != "" {
		return dst[:start], fmt.Errorf("%w: segment %d offset %d: %s", ErrCorrupt, seg.seq, frameOff, reason)
	}
	if f[13] != entryTypeBatch {
		return dst[:start], fmt.Errorf("%w: %+v holds an entry of type %d, not a batch", ErrBadPosition, pos, f[13])
	}
	copy(f, f[batchOffset:])
	return dst[:start+int(pos.Len)], nil
}

// Stats returns the current counters.
func (w *WAL) Stats() Stats {
	return Stats{
		QueueDepth:       int(w.stats.queueDepth.Load()),
		QueueBytes:       w.stats.queueBytes.Load(),
		Groups:           w.stats.groups.Load(),
		Appends:          w.stats.appends.Load(),
		BytesWritten:     w.stats.bytesWritten.Load(),
		FsyncNanos:       w.stats.fsyncNanos.Load(),
		BackpressureWait: w.stats.backpressure.Load(),
		DiskFullGroups:   w.stats.fullGroups.Load(),
		DiskFull:         w.stats.full.Load(),
	}
}

// Close commits what is already queued, stops the commit goroutine and
// closes every segment. Appends blocked for room return ErrClosed. Under
// FsyncNever the active segment is fsynced. If the WAL had failed, Close
// returns the sticky error. Calling Close again returns nil.
func (w *WAL) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	if w.room != nil {
		close(w.room)
		w.room = nil
	}
	w.mu.Unlock()
	w.nudge()
	<-w.exited

	var errs []error
	w.mu.Lock()
	sticky := w.err
	w.mu.Unlock()
	if sticky != nil {
		errs = append(errs, sticky)
	} else if w.fsync == FsyncNever {
		if err := w.active.f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("tier1: fsync segment %d: %w", w.active.seq, err))
		}
	}
	return errors.Join(append(errs, w.closeSegments())...)
}

func (w *WAL) closeSegments() error {
	w.segMu.Lock()
	defer w.segMu.Unlock()
	var errs []error
	for _, s := range w.segments {
		if err := s.f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	w.segments = nil
	return errors.Join(errs...)
}

// ActiveSegment returns the active segment as of the last fully
// acknowledged group: every entry in an earlier segment has already been
// handed to its done callback, and every entry acknowledged later lands in
// this segment or a later one. Trimming below it is safe for a caller that
// tracks positions from callbacks.
func (w *WAL) ActiveSegment() uint64 {
	return w.published.Load()
}

// RemoveSegmentsBefore deletes the sealed segments numbered below seq (never
// the active one), oldest first, so that what remains is always a suffix of
// the log, and then syncs the directory. The caller guarantees nothing
// still needs their entries (Tier 2 has sealed them): a later ReadAt of a
// removed position returns ErrBadPosition. It returns how many it removed.
func (w *WAL) RemoveSegmentsBefore(seq uint64) (int, error) {
	seq = min(seq, w.published.Load()) // never under entries not yet acknowledged
	w.segMu.Lock()
	if w.segments == nil {
		w.segMu.Unlock()
		return 0, ErrClosed
	}
	top := uint64(0)
	var doomed []*segment
	for s, seg := range w.segments {
		top = max(top, s)
		if s < seq {
			doomed = append(doomed, seg)
		}
	}
	doomed = slices.DeleteFunc(doomed, func(s *segment) bool { return s.seq == top })
	slices.SortFunc(doomed, func(a, b *segment) int { return cmp.Compare(a.seq, b.seq) })
	for _, s := range doomed {
		delete(w.segments, s.seq)
	}
	w.segMu.Unlock()
	n := 0
	for _, s := range doomed {
		s.f.Close()
		if err := w.fs.Remove(filepath.Join(w.dir, segmentName(s.seq))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, fmt.Errorf("tier1: remove segment %d: %w", s.seq, err)
		}
		n++
	}
	if n > 0 {
		if err := w.fs.SyncDir(w.dir); err != nil {
			return n, fmt.Errorf("tier1: sync wal dir: %w", err)
		}
	}
	return n, nil
}
