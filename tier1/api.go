package tier1

// This file holds the types the broker codes against; the WAL itself is in
// wal.go and its on-disk format is specified in doc.go.

import (
	"errors"
	"log/slog"
	"time"

	"github.com/chronik-go/chronik/internal/vfs"
)

// Errors returned by the WAL.
var (
	ErrClosed  = errors.New("tier1: wal closed")
	ErrCorrupt = errors.New("tier1: corrupt entry") // wrapped with detail
	// ErrFailed wraps the sticky I/O error after a failed write or fsync:
	// every later Append returns it.
	ErrFailed = errors.New("tier1: wal failed")
	// ErrDiskFull wraps ENOSPC (or EDQUOT) from a write the WAL undid: it
	// truncated what it had written of the group, the group and the queue
	// behind it failed, and the WAL stays usable. Their partitions'
	// appends then fail with it until Reset.
	ErrDiskFull = errors.New("tier1: disk full")
	// ErrUnsupported means a verified segment or frame carries a format
	// version or entry type this release does not know; Open refuses to
	// skip it.
	ErrUnsupported = errors.New("tier1: unsupported wal format")
	// ErrTooLarge rejects a batch larger than MaxBatchBytes.
	ErrTooLarge = errors.New("tier1: batch too large")
	// ErrBadPosition means ReadAt was given a position the WAL never
	// handed out (unknown segment, or outside the written bytes), or the
	// position of an entry that is not a batch (a truncation).
	ErrBadPosition = errors.New("tier1: invalid position")
	// ErrConfig is wrapped by Config.Validate's errors.
	ErrConfig = errors.New("tier1: invalid config")
)

// TopicPartition names a partition by its topic's immutable ID, so a
// deleted-then-recreated topic never inherits old entries.
type TopicPartition struct {
	TopicID   [16]byte
	Partition int32
}

// Position locates an entry's body inside the WAL: an appended batch's
// bytes, or a truncation's 8 offset bytes (doc.go, Entry types). Only a
// batch's position is one ReadAt serves.
type Position struct {
	Segment uint64 // segment sequence number
	Offset  int64  // byte offset of the body (not the frame) in the segment file
	Len     int32  // length of the body
}

// FsyncMode says when an append is acknowledged.
type FsyncMode int

const (
	FsyncAlways FsyncMode = iota // ack after fsync (default)
	FsyncNever                   // ack after write(2); the OS flushes. Explicitly weaker.
)

// Profile bounds the group commit (DESIGN.md Tier 1 contract). The queue
// that QueueDepth and MemoryBytes bound holds appends waiting for a group;
// the group being written is bounded by MaxGroup and by min(MemoryBytes,
// 16 MiB) of batch bytes, so the batch memory the WAL pins is at most about
// twice MemoryBytes.
type Profile struct {
	Name        string
	QueueDepth  int           // queued appends before Append blocks
	MaxGroup    int           // appends per write+fsync
	MaxWait     time.Duration // bounds lingering under load; never an idle sleep (see doc.go)
	MemoryBytes int64         // queued batch bytes before Append blocks
}

// Config configures a WAL. Zero values mean the defaults; see Validate.
type Config struct {
	Dir          string
	FS           vfs.FS        // nil means vfs.Default
	Profile      Profile       // zero means the medium profile
	MaxWait      time.Duration // overrides Profile.MaxWait when > 0
	Fsync        FsyncMode
	SegmentBytes int64        // roll threshold; 0 means DefaultSegmentBytes
	Logger       *slog.Logger // nil means slog.Default()

	// OnGroup, when set, is called by the commit goroutine after each
	// group is durable (before its waiters are completed) with the number
	// of entries, their body bytes (a batch's length, 8 for a truncation)
	// and the time spent in fsync (two fsyncs when the group crossed a
	// segment roll; under FsyncNever only the fsync that seals a segment
	// at a roll). It feeds metrics: it must be cheap and must not block or
	// call the WAL.
	OnGroup func(entries int, bytes int64, fsync time.Duration)
	// OnFailed, when set, is called once by the commit goroutine when the
	// WAL fails for good (the error wraps ErrFailed; a full disk is not
	// such a failure). It must not block or call the WAL.
	OnFailed func(err error)
}

// EntryType says what a WAL entry holds. Its value is the frame's typ byte
// (doc.go, Frames).
type EntryType uint8

// The entry types. Open fails with ErrUnsupported on any other, so a
// ReplayFunc sees these two only.
const (
	EntryBatch      EntryType = entryTypeBatch // a record batch, from Append
	EntryTruncation EntryType = entryTypeTrunc // a cut of the partition's log, from AppendTruncation
)

// Entry is one recovered WAL entry, as Open hands it to a ReplayFunc.
type Entry struct {
	Type EntryType
	TP   TopicPartition
	// Batch is an EntryBatch's record batch, only valid during the call;
	// nil for a truncation.
	Batch []byte
	// Offset is an EntryTruncation's: the owner cuts TP's records at or
	// above it that are not sealed. Never negative; zero for a batch.
	Offset int64
	// Pos locates the entry, as its DoneFunc reported it; ReadAt serves
	// only a batch's.
	Pos Position
}

// ReplayFunc is called for every valid entry, in log order, while Open
// recovers.
type ReplayFunc func(e Entry) error

// RecoveryReport says what Open found.
type RecoveryReport struct {
	Segments       int            // readable segments after recovery, the active one included
	Entries        int            // entries replayed
	TruncatedBytes int64          // torn tail removed from the last segment
	Corruptions    []CorruptRange // damage that is reported and never served
}

// CorruptRange is a region of a segment that failed its checks: a range of
// bad bytes followed by a valid frame, the bad end of a sealed segment, a
// whole segment whose header failed (Offset 0), or missing segments.
type CorruptRange struct {
	Segment uint64
	Offset  int64 // file offset of the first bad byte
	Reason  string
}

// Stats are counters for metrics, read without locks.
type Stats struct {
	QueueDepth       int    // appends waiting for a group
	QueueBytes       int64  // their body bytes (a batch's length, 8 for a truncation)
	Groups           uint64 // groups committed (one write+fsync each, two across a roll)
	Appends          uint64 // appends committed and acknowledged, truncations included
	BytesWritten     uint64 // frame bytes written to segments
	FsyncNanos       uint64 // total time in fsync
	BackpressureWait uint64 // Appends that had to wait for room
	DiskFullGroups   uint64 // groups undone because the disk was full (ErrDiskFull)
	DiskFull         bool   // the last group written or undone was undone for want of space
}

// DoneFunc is called exactly once per accepted append, from the commit
// goroutine, after the group holding it is durable (or with the error that
// failed it). It must not block.
type DoneFunc func(pos Position, err error)
