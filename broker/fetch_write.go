package broker

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"net"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Writing Fetch responses without copying their record bytes.
//
// kmsg encodes a response into one buffer, record bytes included: for a
// fetch that is a copy of every byte served. Instead, each partition's
// records (a local read's RecordBatches when large, or the views of an
// archived read, which point into the archive's verified chunks) are
// swapped for a marker before encoding; the encoded frame is then cut at
// each marker and the records are written between the pieces with one
// vectored write (writev). The wire bytes are exactly what kmsg would
// have produced.

// spliceMin is the record bytes from which a partition's records are
// written in place rather than copied into the frame.
const spliceMin = 64 << 10

// fetchMarker stands in for a partition's records while the frame is
// encoded. It is random, so no other field of a response can hold it.
var fetchMarker = func() []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}()

// vecFetch is a Fetch response some of whose record bytes are archive
// views held beside it, by partition, rather than in RecordBatches. The
// views' chunks are held until releaseReply, once the response is written
// or dropped.
type vecFetch struct {
	*kmsg.FetchResponse
	views map[*kmsg.FetchResponseTopicPartition][][]byte
	slots []fetchSlot // their holds
}

// fetchReply returns what Fetch answers: resp, with the slots' archive
// views attached when there are any.
func fetchReply(resp *kmsg.FetchResponse, slots []fetchSlot) kmsg.Response {
	var views map[*kmsg.FetchResponseTopicPartition][][]byte
	for i := range slots {
		if viewsLen(slots[i].views) > 0 {
			if views == nil {
				views = make(map[*kmsg.FetchResponseTopicPartition][][]byte)
			}
			views[slots[i].sp] = slots[i].views
		}
	}
	if views == nil {
		for i := range slots {
			slots[i].hold.Release()
		}
		return resp
	}
	return &vecFetch{FetchResponse: resp, views: views, slots: slots}
}

// releaseReply lets go of what a reply held for its writing: call it once
// the reply is written or dropped.
func releaseReply(resp kmsg.Response) {
	if v, ok := resp.(*vecFetch); ok {
		for i := range v.slots {
			v.slots[i].hold.Release()
		}
		v.slots = nil
	}
}

func viewsLen(views [][]byte) int {
	n := 0
	for _, v := range views {
		n += len(v)
	}
	return n
}

// unwrapResponse returns the kmsg response a reply stands for.
func unwrapResponse(resp kmsg.Response) kmsg.Response {
	if v, ok := resp.(*vecFetch); ok {
		return v.FetchResponse
	}
	return resp
}

// appendFrame appends the response frame (size, correlation id, header
// tags, body) to buf. For a Fetch response with large records it returns
// the frame as pieces to write in order, buf holding everything but the
// records; pieces is nil otherwise. size is the frame's length on the wire.
func appendFrame(buf []byte, corr int32, flex bool, resp kmsg.Response) (out []byte, pieces net.Buffers, size int) {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0)
	if flex {
		buf = append(buf, 0) // empty tagged fields of response header v1
	}
	binary.BigEndian.PutUint32(buf[start+4:], uint32(corr))
	fr, views := fetchParts(resp)
	type cut struct {
		sp    *kmsg.FetchResponseTopicPartition
		saved []byte
		parts [][]byte
	}
	var cuts []cut
	if fr != nil {
		for i := range fr.Topics {
			for j := range fr.Topics[i].Partitions {
				sp := &fr.Topics[i].Partitions[j]
				v := views[sp]
				if viewsLen(v) == 0 && len(sp.RecordBatches) < spliceMin {
					continue
				}
				parts := v
				if len(sp.RecordBatches) > 0 {
					parts = append([][]byte{sp.RecordBatches}, v...)
				}
				cuts = append(cuts, cut{sp: sp, saved: sp.RecordBatches, parts: parts})
				sp.RecordBatches = fetchMarker
			}
		}
	}
	if len(cuts) == 0 {
		buf = resp.AppendTo(buf)
		binary.BigEndian.PutUint32(buf[start:], uint32(len(buf)-start-4))
		return buf, nil, len(buf) - start
	}
	body := len(buf)
	buf = fr.AppendTo(buf)
	for _, c := range cuts {
		c.sp.RecordBatches = c.saved
	}

	// Cut the frame at each marker, in encoding order, replacing the
	// marker's length prefix with the records'.
	flexible := fr.IsFlexible()
	var markerPrefix []byte
	if flexible {
		markerPrefix = kbin.AppendUvarint(nil, uint32(len(fetchMarker))+1)
	} else {
		markerPrefix = kbin.AppendInt32(nil, int32(len(fetchMarker)))
	}
	lens := make([]byte, 0, 5*len(cuts)) // never grows: pieces point into it
	pieces = make(net.Buffers, 0, 2+3*len(cuts))
	prev, from := start, body
	size = len(buf) - start
	for _, c := range cuts {
		i := bytes.Index(buf[from:], fetchMarker)
		if i < 0 || from+i-len(markerPrefix) < body || !bytes.Equal(buf[from+i-len(markerPrefix):from+i], markerPrefix) {
			// Cannot happen with a random marker; encode with the records
			// copied rather than write a wrong frame.
			return appendFlat(buf[:start], corr, flex, fr, views)
		}
		i += from
		n := viewsLen(c.parts)
		l := len(lens)
		if flexible {
			lens = kbin.AppendUvarint(lens, uint32(n)+1)
		} else {
			lens = kbin.AppendInt32(lens, int32(n))
		}
		pieces = append(pieces, buf[prev:i-len(markerPrefix)], lens[l:])
		for _, p := range c.parts {
			if len(p) > 0 {
				pieces = append(pieces, p)
			}
		}
		size += len(lens) - l - len(markerPrefix) + n - len(fetchMarker)
		prev, from = i+len(fetchMarker), i+len(fetchMarker)
	}
	pieces = append(pieces, buf[prev:])
	binary.BigEndian.PutUint32(buf[start:], uint32(size-4))
	return buf, pieces, size
}

// appendFlat encodes a Fetch response with every record byte copied into
// the frame.
func appendFlat(buf []byte, corr int32, flex bool, fr *kmsg.FetchResponse, views map[*kmsg.FetchResponseTopicPartition][][]byte) ([]byte, net.Buffers, int) {
	for sp, v := range views {
		saved := sp.RecordBatches
		for _, p := range v {
			sp.RecordBatches = append(sp.RecordBatches, p...)
		}
		defer func() { sp.RecordBatches = saved }()
	}
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0)
	if flex {
		buf = append(buf, 0)
	}
	binary.BigEndian.PutUint32(buf[start+4:], uint32(corr))
	buf = fr.AppendTo(buf)
	binary.BigEndian.PutUint32(buf[start:], uint32(len(buf)-start-4))
	return buf, nil, len(buf) - start
}

func fetchParts(resp kmsg.Response) (*kmsg.FetchResponse, map[*kmsg.FetchResponseTopicPartition][][]byte) {
	switch r := resp.(type) {
	case *kmsg.FetchResponse:
		return r, nil
	case *vecFetch:
		return r.FetchResponse, r.views
	}
	return nil, nil
}
