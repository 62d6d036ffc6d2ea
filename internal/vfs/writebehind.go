package vfs

import "io"

// WriteBehindBytes is how much a WriteBehind writer lets accumulate before
// it starts the file's writeback.
const WriteBehindBytes = 8 << 20

// writebacker is a file whose writeback can be started early (the
// operating system's files, on Linux).
type writebacker interface {
	// writeback starts writing [off, off+n) to disk without waiting, after
	// waiting for the writeback of [prevOff, off) to finish.
	writeback(prevOff, off, n int64) error
}

// WriteBehind wraps w, which writes f from offset start on, so that every
// WriteBehindBytes the bytes just written start going to disk and the
// chunk before them is waited for. A large file written at once (a sealed
// segment, an archived copy) then never holds hundreds of megabytes of
// dirty pages whose fsync would stall every other fsync on the disk (the
// write-ahead log's, which acks=all waits for) behind it; its own final
// Sync has little left to do. Files that cannot start writeback early
// (other platforms, in-memory ones) are written through unchanged.
func WriteBehind(w io.Writer, f File, start int64) io.Writer {
	wb, ok := f.(writebacker)
	if !ok {
		return w
	}
	return &writeBehind{w: w, f: wb, prev: start, mark: start, end: start}
}

type writeBehind struct {
	w          io.Writer
	f          writebacker
	prev, mark int64 // the chunk being written back starts at prev; the next at mark
	end        int64 // the offset after the last byte written
	failed     bool  // writeback is not supported here after all: plain writes
}

func (wb *writeBehind) Write(p []byte) (int, error) {
	n, err := wb.w.Write(p)
	wb.end += int64(n)
	if !wb.failed && wb.end-wb.mark >= WriteBehindBytes {
		if werr := wb.f.writeback(wb.prev, wb.mark, wb.end-wb.mark); werr != nil {
			wb.failed = true // an optimisation only: Sync still makes it durable
		}
		wb.prev, wb.mark = wb.mark, wb.end
	}
	return n, err
}
