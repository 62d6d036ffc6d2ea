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
// ranged GET is one chunk, checked before it is cached or used, and every
// batch served is checked again against its Kafka CRC.
//
// # Object layout and manifests
//
// See manifest.go: per partition one manifest object, replaced atomically,
// naming content-addressed segment objects that were verified before the
// manifest was written.
//
// # Archived reads
//
// Archive.Read finds the manifest entry holding an offset, fetches the
// segment's .index and .timeindex whole (verified, parsed by tier2 and kept
// in a bounded in-memory LRU), and reads the .log through the chunk cache:
// a bounded on-disk LRU (by bytes) emptied at startup. Concurrent readers of
// a chunk share one GET, and the most recently fetched chunks (2 x
// ReadAhead) are also kept in memory. A read that starts where an earlier read of the
// partition ended is sequential: the chunks of the next ReadAhead bytes,
// across segment boundaries, are fetched in the background by at most
// ReadAheadParallel GETs.
package tier3
