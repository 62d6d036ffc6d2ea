// Package tier2 holds Chronik's sealed local segments: immutable per-partition
// files of Kafka record batches with a sparse offset index and a time index,
// and the operations on them that never touch the hot path: writing a sealed
// segment, validating it at startup and verifying it in full, describing
// its damage, serving byte ranges to Fetch, timestamp lookups, retention
// (whole-segment deletion) and compaction (rewriting a segment to the
// latest record per key).
//
// The broker decides when to seal (segment.bytes / segment.ms), which
// segments retention deletes and when to compact; this package owns the
// files and their formats. All I/O goes through internal/vfs.
//
// # Directory layout
//
// Every partition has a directory named by its topic ID in hex and its
// partition number:
//
//	<data>/segments/<topic-id-hex>-<partition>/
//	    00000000000000000000.log         record batches
//	    00000000000000000000.index       sparse offset index
//	    00000000000000000000.timeindex   time index
//	    00000000000000000000.archived    (optional) marker: copied to Tier 3
//	    00000000000000004096.log  ...
//	    logstart                         log start offset checkpoint
//	    producers                        idempotent producer snapshot
//
// A segment is named by its base offset, zero-padded to 20 decimal digits so
// that lexical order is offset order. A segment covers the offsets
// [base, next): next is recorded in its index headers and is kept even when
// compaction drops the records at the end, so the log end is never
// re-derived from surviving records. Files ending in .tmp are unfinished
// writes and are deleted at startup, as are index files without a .log.
//
// # .log
//
// The concatenation of Kafka v2 record batches exactly as they were stored
// in the write-ahead log (base offset assigned, producer CRC intact), in
// offset order, nothing else: no header, no framing. A Fetch of a sealed
// range is therefore a byte-range copy; the client verifies each batch's
// CRC as it would from Kafka. Batch integers are big-endian (Kafka's).
//
// # Index header
//
// Both index files start with the same 80-byte header; all integers in
// index files are little-endian, checksums CRC-32C (Castagnoli):
//
//	0          8      10     12     16       24       32        40       48         56         64          72      76
//	+----------+------+------+------+--------+--------+---------+--------+----------+----------+-----------+-------+--------+
//	| magic    | ver  | kind | hcrc | base   | next   | logSize | maxTs  | maxTsPos | lastPos  | reserved  | count | ecrc   |
//	| CHRNKIDX | u16=1| u16  | u32  | i64    | i64    | i64     | i64    | i64      | i64      | i64 = 0   | u32   | u32    |
//	+----------+------+------+------+--------+--------+---------+--------+----------+----------+-----------+-------+--------+
//
// kind is 1 for .index and 2 for .timeindex. hcrc covers bytes [0,12) and
// [16,80). base and next bound the segment's offsets; logSize is the exact
// size of the .log; maxTs is the largest batch max timestamp in the segment
// (-1 when empty) and maxTsPos the .log position of the first batch that
// carries it; lastPos is the position of the last batch (-1 when empty).
// count is the number of entries after the header and ecrc the CRC-32C of
// those entry bytes.
//
// # .index entries (kind 1), 8 bytes each
//
//	| relative offset u32 | position u32 |
//
// relative offset is a batch's base offset minus the segment base; position
// is where that batch starts in the .log. The first batch always has an
// entry; after that a batch gets one when at least IndexInterval (4 KiB)
// bytes of log have passed since the previous entry. Entries strictly
// increase in both fields. To find offset o: take the last entry with
// relative offset <= o-base and walk batch headers (base offset, length)
// forward from its position; the walk covers at most IndexInterval bytes
// plus one batch.
//
// # .timeindex entries (kind 2), 16 bytes each
//
//	| timestamp i64 | relative offset u32 | position u32 |
//
// timestamp is the running maximum of batch max timestamps up to and
// including the batch at (relative offset, position). An entry is written
// for a batch when that running maximum has grown since the previous entry
// and at least IndexInterval bytes have passed (the first batch always has
// one), so timestamps strictly increase. To find the first batch whose max
// timestamp is >= t: take the last entry whose timestamp is < t (every batch
// up to it has a smaller max timestamp) and walk batch headers forward from
// the batch after it, or from the start when there is none. The walk is
// bounded like the offset index's.
//
// Segment positions fit in u32 because a segment never exceeds segment.bytes
// (at most 2 GiB - 1) plus one batch (at most 1 GiB).
//
// # Writing a segment
//
// A segment is written as <name>.log.tmp, <name>.index.tmp and
// <name>.timeindex.tmp; each is fsynced, then the indexes are renamed into
// place, then the log, then the directory is fsynced. So a .log exists only
// complete and fsynced; a crash before its rename leaves .tmp files and
// perhaps orphan indexes, all deleted at startup. The source of the batches
// (the write-ahead log) is not trimmed until the segment is durable.
//
// # Startup validation
//
// Validation is cheap and does not read the log: for each .log, read the
// .index header and check its CRC, kind, base (equal to the file name) and
// that logSize equals the .log's size; read the .timeindex header and check
// it agrees; read and CRC-check the last batch at lastPos. Entries are read
// and checked (ecrc) when the segment is first used. If any check fails the
// .log is scanned, every batch verified (CRC, magic, length, offsets
// increasing and below the recorded next):
//
//   - Every batch is good and the log is at least as long as a usable
//     header recorded: the index was what failed. Both indexes are rebuilt
//     from the scan and written again atomically; next is the larger of
//     the recorded one (a usable .index or .timeindex header) and the
//     offset after the last batch. (A log longer than its header records
//     is the complete old log of a compaction or repair killed between
//     renaming the new indexes and the new log.)
//   - A batch fails, or the log is shorter than a usable header records:
//     the segment is damaged. Logs are renamed into place complete and
//     fsynced, so this is never a torn write but lost or flipped bits, and
//     the log is neither truncated nor rewritten, nor are its indexes: a
//     log cut at its last good batch would still claim offsets [base,
//     next) without holding the tail, and a replica could then serve,
//     lead or archive that hole. The segment is loaded with its damage
//     described (Segment.Damage): the position of the first bad batch and
//     the first offset not verifiably present. It keeps the next its
//     header recorded; when neither header is usable next is unknown here
//     and is first the end of the verified prefix, and the broker raises
//     it from what it knows (the next segment's base, the producers
//     checkpoint's sealed end) with Segment.ResolveNext.
//
// # Damage
//
// Startup validation sees damage only where it looks. Segment.Verify reads
// a whole log, paced to a byte rate, and checks every batch as the scan
// does (and that its offsets lie within [base, next)); the broker's
// scrubber runs it over every sealed segment periodically, and a read that
// fails a batch check marks the segment suspect (Segment.Suspect) for an
// early Verify. Damage found either way is recorded on the segment, never
// cleared: reads before it are served as ever and stop where it starts;
// reads at or past its first unverified offset, timestamp lookups that
// would need to look past it, IndexBytes (so Tier 3 never archives it) and
// compaction all fail with a *DamageError, which wraps ErrCorrupt (the
// broker answers KAFKA_STORAGE_ERROR, never the bytes). A damaged segment
// is repaired, not cut: the broker writes a new segment with the same base
// and next from a good copy (Create, Append, Finish, which rename over the
// damaged files), publishes it and retires the damaged one.
//
// # logstart and producers
//
// logstart holds the partition's log start offset, advanced by retention
// and DeleteRecords. producers holds the idempotent producer windows as of a
// sealed end offset, written at every seal, so duplicate detection survives
// trimming the write-ahead log. Both are small files written as
// <name>.tmp, fsynced, renamed and the directory fsynced:
//
//	| magic "CHRNKCKP" 8 | version u16=1 | kind u16 | crc u32 | len u32 | payload (len bytes) |
//
// kind 1 is logstart (payload: log start i64), kind 2 is producers
// (payload: sealed end i64, count u32, then per producer: id i64, epoch
// i16, n u8, and n entries of first seq i32, last seq i32, base offset i64,
// oldest first). crc covers the payload. A checkpoint that fails its checks
// is ignored with a warning.
//
// # Archived segments (the Tier 3 seam)
//
// A segment copied to object storage is marked by an empty <name>.archived
// file created with [Segment.MarkArchived] (create, fsync, sync dir). Tier 3
// (broker/tier3.go) calls it once an upload is verified and recorded in its
// manifest. The archived copy is these same files in object storage;
// [ParseIndex] and [Index] serve reads of it through an io.ReaderAt.
// From then on local.retention.ms and local.retention.bytes (instead of
// retention.ms and retention.bytes) decide when the local copy may be
// deleted; a segment that is not archived is never deleted by local
// retention.
package tier2
