// Package tier1 is Chronik's hot log head: a group-commit write-ahead log
// shared by every partition on a broker.
//
// The broker validates a produce batch, assigns its offsets, and hands the
// complete Kafka record batch (v2, final base offset already written) to
// [WAL.Append]. Batch bytes are opaque here: the WAL frames them, writes many
// of them with one write(2) and one fdatasync(2), and then completes every
// waiter of that group with the [Position] of its bytes. [WAL.ReadAt] serves
// those bytes back after re-verifying their checksum; [Open] replays every
// verified entry after a restart. A partition whose log is cut (a follower
// dropping its unconfirmed tail) records the cut with
// [WAL.AppendTruncation], an entry of its own type, so that replay cuts
// the same records.
//
// # Files
//
// A WAL is a directory of segment files named by a decimal sequence number,
// zero-padded to 20 digits so that lexical order is log order:
//
//	00000000000000000001.wal
//	00000000000000000002.wal
//	...
//
// Sequence numbers start at 1 and grow by one per segment. Other names in the
// directory are ignored. Only the highest-numbered segment is ever written
// (the active segment); the others are sealed and never modified. Sealed
// segments are deleted, oldest first, by [WAL.RemoveSegmentsBefore] once
// Tier 2 has copied every live entry in them into sealed partition segments;
// what remains is always a suffix of the sequence, so a missing prefix is
// not a gap.
//
// All integers are little-endian. All checksums are CRC-32C (Castagnoli).
//
// # Segment header
//
// Every segment starts with a 32-byte header:
//
//	0                8        10       12       16                24                32
//	+----------------+--------+--------+--------+-----------------+-----------------+
//	| magic          | version| flags  | crc    | sequence        | salt            |
//	| "CHRNKWAL"     | u16 =1 | u16 =0 | u32    | u64             | u64             |
//	+----------------+--------+--------+--------+-----------------+-----------------+
//
// crc covers bytes [0,12) and [16,32). sequence must equal the number in the
// file name. salt is 8 random bytes chosen when the segment is created; it
// seeds every frame checksum in the segment (see below). A new segment's
// header is written and fsynced, and then the directory is fsynced, before
// any frame is written to it.
//
// # Frames
//
// After the header the segment is a sequence of frames. Every frame starts at
// an offset that is a multiple of 8 and is followed by 0-7 zero bytes of
// padding so that the next frame is aligned too:
//
//	0        4        8        12   13   14       16
//	+--------+--------+--------+----+----+--------+
//	| magic  | length | crc    | ver| typ| 0 u16  |   frame header, 16 bytes
//	| u32    | u32    | u32    | u8 | u8 |        |
//	+--------+--------+--------+----+----+--------+
//	| topic ID (16 bytes)      | partition (i32)  |   payload, length bytes:
//	+--------------------------+------------------+   the 20-byte entry prefix
//	| body (length - 20 bytes) ...                |   and the body, whose
//	+---------------------------------------------+   meaning typ gives
//	| zero padding to the next multiple of 8      |
//	+---------------------------------------------+
//
// The fields:
//
//   - magic is the low 32 bits of the segment salt XOR 0x1F57A6C3. It lets
//     the scanner find candidate frames after damage (see Recovery); being
//     different in every segment, it cannot be planted in record bytes, so
//     that search stays linear in the damaged bytes.
//   - length counts the payload only: 20 + len(body). It is at least 20 and
//     at most 1 GiB; anything else is not a frame.
//   - ver is the frame format version (1); typ is the entry type (1 = record
//     batch, 2 = truncation; see Entry types); the two bytes after them are
//     flags, zero in version 1.
//   - crc is CRC-32C over, in order: the segment salt (8 bytes), the frame's
//     own byte offset in the segment (u64), header bytes [0,8) and [12,16),
//     and the payload.
//
// The [Position] handed out for an entry is (segment sequence, offset of the
// body = frame offset + 36, body length). ReadAt reads the whole frame back
// from Offset-36 and verifies magic, length and crc before returning
// anything, and returns the body of a record batch only.
//
// Why the checksum is seeded with salt and offset: record bytes are chosen by
// producers and may contain anything, including the image of a valid frame.
// Seeding with a random per-segment salt means such an image does not verify
// when the scanner searches past damage, and seeding with the offset means a
// frame only verifies where it was written (a misdirected or duplicated
// sector does not verify elsewhere). CRC-32C is not a MAC; this defends
// against accidents and makes forgery a 1-in-2^32 guess, nothing more.
//
// Why 8-byte alignment: sectors are at least 512 bytes, so the 8 bytes
// holding magic and length never straddle a sector and cannot be torn by a
// partial sector write; and the scanner only has to look for a frame at
// every eighth byte.
//
// # Entry types
//
// Every entry names its partition in the 20-byte prefix. typ says what the
// body after it is:
//
//   - 1, record batch: a complete Kafka record batch (v2) as Append took it,
//     final base offset written. Its bytes are opaque here: the length
//     bounds are the only check on them.
//   - 2, truncation: the body is exactly 8 bytes, the truncation offset as
//     an i64 (little-endian, like every integer here), never negative. The
//     length field of a truncation frame is therefore always 28, and the
//     frame takes 48 bytes of the segment, padding included.
//
// A truncation says that the partition's records at or above the offset
// that are still only in the WAL are gone. The broker appends one with
// [WAL.AppendTruncation] when a follower drops the unconfirmed tail of its
// log before fetching from a new leader, and cuts its log only once the
// entry's DoneFunc has reported it committed. Replay hands it to the owner at its place in log order
// (an [Entry] of type [EntryTruncation]), and the owner cuts the
// partition's unsealed records at or above the offset, as it did live: the
// batches the truncation dropped stay gone, and batches appended after it
// (the new leader's, at the same offsets) replay on top. How far a cut may
// reach (never into what Tier 2 has sealed, nor below the log start) is the
// owner's rule, not the WAL's.
//
// A truncation is written like a batch: it takes the same queue (counting
// its 8 body bytes against MemoryBytes) and the same group commit, it is
// written and, with [FsyncAlways], fsynced with its group before its
// DoneFunc runs, in append order with the batches around it, and on a full
// disk or a failed write or fsync it is undone, fails, fences its partition
// and needs [WAL.Reset] exactly as a batch does (see Writing). Its Position
// locates its 8-byte body; ReadAt refuses it with [ErrBadPosition], since
// ReadAt serves record batches only, and nobody needs to read a truncation
// back outside replay.
//
// Why a type of its own and not a batch with a recognisable payload: a
// batch's bytes are chosen by producers (or by a leader), so no pattern of
// batch bytes can be reserved to mean something else, while typ is covered
// by the crc and written only by the WAL. Why a fixed length and a
// non-negative offset: a truncation has nothing more to say, so a verified
// type-2 frame of any other length, or with a negative offset, was not
// written by this release; like an unknown type or version it makes Open
// fail with [ErrUnsupported] rather than be guessed at or skipped.
//
// Earlier releases had no type 2: they wrote a truncation as a type-1
// entry whose body is exactly the 16 bytes "CHRTRUNC" followed by the
// offset as a big-endian u64. The WAL replays such an entry as the batch it
// claims to be; the broker, which wrote them, recognises that exact body
// and applies it as a truncation, so a data directory written by an
// earlier release recovers the same. The two cannot be confused: no record
// batch is 16 bytes long (its header alone is 61). Nothing writes that
// form any more.
//
// # Writing
//
// One commit goroutine owns the active segment. It drains up to
// Profile.MaxGroup queued entries (and at most 16 MiB, or MemoryBytes if
// smaller; a single larger entry is still taken alone), encodes their frames
// into one reusable buffer, issues one write and, with [FsyncAlways], one
// fdatasync, and only then calls every entry's DoneFunc, in append order.
// There is no lingering: when the disk is idle an entry is committed as soon
// as it arrives, and under load the next group is whatever queued during the
// previous fsync. Profile.MaxWait is therefore an upper bound that this
// implementation never approaches; it is validated and kept for a future
// lingering policy. With [FsyncNever] the DoneFuncs run after the write, and
// a segment is fsynced only when it is sealed and at Close.
//
// An entry goes into the active segment unless the segment already holds at
// least one frame and the entry's frame would take the file past
// SegmentBytes. Then the commit goroutine writes what it has encoded, fsyncs
// the segment (also under [FsyncNever], so a sealed segment is always
// complete on disk), creates the next segment as described above, and
// continues the group there. An entry is never split; an entry larger than
// SegmentBytes gets a segment of its own.
//
// A write that fails for want of space (ENOSPC, EDQUOT) is undone: the
// commit goroutine removes the segments the group created, truncates the
// segment it started in back to where the group began and fsyncs that, so
// no frame of the group can come back at recovery (the bytes before it were
// durable before the group began). Every entry of the group and every queued
// entry then fails with the error wrapped in [ErrDiskFull], and their
// partitions are fenced: their Appends fail the same way until the owner,
// having taken back the offsets it gave the failed entries, calls
// [WAL.Reset]. Other partitions append as before, and everything succeeds
// again once there is space.
//
// Any other failed write or fsync, or an undo that fails, is sticky: every
// entry of the group and every queued entry fails with the error wrapped in
// [ErrFailed], and so does every later Append. The WAL never retries an
// fsync, since after a failed fsync the kernel may have dropped the dirty
// pages and a second fsync can succeed without the data being on disk. To
// recover the owner closes the WAL and opens it again; recovery trims
// whatever the failed group left behind.
//
// # Recovery
//
// Open scans every segment in sequence order and verifies every frame. A
// frame that fails any check (magic, length bounds, crc) is bad. From a bad
// frame at offset X the scanner tries every following 8-aligned offset for a
// frame that verifies:
//
//   - If it finds one at Y, the range [X,Y) is mid-log corruption: it is
//     reported in RecoveryReport.Corruptions, never replayed or served, and
//     scanning resumes at Y.
//   - If nothing after X verifies and this is the last segment, [X,EOF) is a
//     torn tail: the bytes of a group that was being written when the
//     process or the machine died, none of which was acknowledged under
//     FsyncAlways. The file is truncated to X, fsynced, and the count is
//     reported in TruncatedBytes. Appends continue at X.
//   - If nothing after X verifies in a sealed segment, [X,EOF) is reported as
//     corruption: sealed segments were fsynced in full before their successor
//     existed, so a bad tail there is damage, not a crash artefact. Sealed
//     segments are never modified.
//
// A crash whose unsynced pages reached the disk out of order can leave, at
// the end of the last segment, a bad range followed by valid frames that
// were never acknowledged. The rule above reports that as corruption; it
// cannot be told from damage, and nothing acknowledged is lost either way.
//
// A segment whose header fails its checks is reported as corrupt as a whole
// (its frames cannot be verified without the salt) and skipped, except that
// a last segment no longer than a header is a creation torn by a crash and is
// removed. A gap in the sequence numbers is reported as corruption too. A
// frame or header that verifies but carries a version or type this code does
// not know makes Open fail with [ErrUnsupported] instead of skipping data
// written by a newer release. So does a verified truncation frame that
// breaks the rules of Entry types (a length other than 28, a negative
// offset).
//
// If the last segment has a valid header, appends continue in it; otherwise
// Open creates the next segment. If Open has to create the WAL directory it
// fsyncs each new directory's parent, so acknowledged entries cannot
// disappear with their directory.
package tier1
