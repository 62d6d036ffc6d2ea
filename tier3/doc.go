// Package tier3 is Chronik's object storage: the Store seam and its
// backends, the object layout and manifests of archived segments, and the
// archived read path (ranged GETs, chunk checksums, on-disk cache,
// read-ahead). The broker decides what to archive and when (broker/tier3.go);
// this package owns the bytes in the bucket and their formats.
//
// # Backends
//
// Store is small on purpose (Put, Get, GetRange, Head, List, Delete); every
// backend passes the conformance suite in tier3test:
//
//	MemStore    in memory, for unit tests
//	FileStore   local filesystem, the embedded default; fsync + atomic rename
//	S3Store     aws-sdk-go-v2: AWS credential chain, region, endpoint
//	            override and path-style addressing (for MinIO and others)
//	MinIOStore  minio-go
//
// Open picks one from CHRONIK_TIER3_URL (file://, s3://bucket/prefix,
// minio://host:port/bucket/prefix); see Open for the environment each reads.
//
// # Checksums
//
// Put computes the content's SHA-256 and stores it with the object (user
// metadata chronik-sha256 in S3 and MinIO, a trailer in the file backend);
// S3Store also sends it as x-amz-checksum-sha256 and MinIOStore sends
// Content-MD5, so the server rejects a body damaged on the way. Get checks
// the SHA-256 at the end of the stream (ErrChecksum instead of io.EOF).
// Ranges cannot be checked against a whole-object digest, so each archived
// .log also has a CRC-32C per ChunkSize piece in its manifest entry: every
// chunk is checked when it arrives (from a GET or the disk cache), before
// anyone uses it. Upload checks every batch's Kafka CRC as the segment
// streams past (tier2.BatchVerifier) and refuses a damaged one, and the
// manifest entry says so (BatchesChecked); reads of such segments rely on
// the chunk CRCs, which cover every byte served, while older entries get
// each served batch checked again.
//
// # Object layout and manifests
//
// See manifest.go: per partition one manifest object, replaced atomically,
// naming content-addressed segment objects that were verified before the
// manifest was written.
//
// # Archived reads
//
// Archive.ReadVec finds the manifest entry holding an offset, fetches the
// segment's .index whole (verified, parsed by tier2 and kept in a bounded
// in-memory LRU; the .timeindex joins it when a timestamp lookup first
// needs it), and returns read-only views of verified
// chunks of the .log (read.go): a Fetch response writes them to its socket
// without copying them. Chunks live in a bounded in-memory LRU (HotBytes);
// the bounded on-disk cache, emptied at startup, is a second level fed
// off the read path, which admits only chunks that would otherwise be
// fetched again. Concurrent readers of a chunk share one GET. A read that
// starts where an earlier read of the partition ended is sequential: the
// ReadAhead bytes after it, across segment boundaries, are fetched in the
// background by at most ReadAheadParallel GETs of up to ReadAheadGET bytes
// each, and read-ahead continues whenever one of them ends. Any other
// read fetches its chunk by a GET of ReadAheadGET bytes from it. Chunks
// are checked against their CRC-32C as they arrive, in pieces.
package tier3
