package broker

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// A Fetch response written in pieces (records spliced between the
// encoded parts) is byte for byte the frame kmsg encodes with the records
// inline, for every version, with local records, archive views split
// over several buffers, small records left inline, and empty partitions.
func TestAppendFrameSplicesRecords(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	blob := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	}
	for v := int16(4); v <= 17; v++ {
		resp := kmsg.NewPtrFetchResponse()
		resp.Version = v
		views := map[*kmsg.FetchResponseTopicPartition][][]byte{}
		var want []*kmsg.FetchResponseTopicPartition
		var wantData [][]byte
		for ti := range 2 {
			rt := kmsg.NewFetchResponseTopic()
			rt.Topic = []string{"a", "topic-b"}[ti]
			for pi := range 4 {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition = int32(pi)
				sp.HighWatermark = int64(1000 * pi)
				sp.RecordBatches = []byte{}
				rt.Partitions = append(rt.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		for ti := range resp.Topics {
			for pi := range resp.Topics[ti].Partitions {
				sp := &resp.Topics[ti].Partitions[pi]
				full := []byte{}
				switch pi {
				case 0: // large local records
					sp.RecordBatches = blob(spliceMin + 17)
					full = sp.RecordBatches
				case 1: // small local records, encoded inline
					sp.RecordBatches = blob(100)
					full = sp.RecordBatches
				case 2: // archive views across three chunks
					a, b, c := blob(5000), blob(70000), blob(3)
					views[sp] = [][]byte{a, b, c}
					full = append(append(append([]byte{}, a...), b...), c...)
				}
				want = append(want, sp)
				wantData = append(wantData, full)
			}
		}
		var reply kmsg.Response = resp
		if len(views) > 0 {
			reply = &vecFetch{FetchResponse: resp, views: views}
		}
		flex := v >= 12
		frame, pieces, size := appendFrame([]byte("junk"), 77, flex, reply)
		if pieces == nil {
			t.Fatalf("v%d: nothing spliced", v)
		}
		got := bytes.Join(pieces, nil)
		if size != len(got) {
			t.Fatalf("v%d: size %d, pieces hold %d bytes", v, size, len(got))
		}
		if !bytes.HasPrefix(frame, []byte("junk")) || &pieces[0][0] != &frame[4] {
			t.Fatalf("v%d: frame not appended after the caller's bytes", v)
		}

		// The reference: records inline, encoded by kmsg.
		for i, sp := range want {
			sp.RecordBatches = wantData[i]
		}
		ref := []byte{0, 0, 0, 0, 0, 0, 0, 77}
		if flex {
			ref = append(ref, 0)
		}
		ref = resp.AppendTo(ref)
		binary.BigEndian.PutUint32(ref, uint32(len(ref)-4))
		if !bytes.Equal(got, ref) {
			t.Fatalf("v%d: spliced frame (%d bytes) differs from kmsg's (%d bytes)", v, len(got), len(ref))
		}
		// And it decodes as the response it stands for.
		dec := kmsg.NewPtrFetchResponse()
		dec.Version = v
		body := ref[8:]
		if flex {
			body = body[1:]
		}
		if err := dec.ReadFrom(body); err != nil {
			t.Fatalf("v%d: decode: %v", v, err)
		}
		if !bytes.Equal(dec.Topics[0].Partitions[2].RecordBatches, wantData[2]) {
			t.Fatalf("v%d: archive views not decoded back", v)
		}
	}
}

// Without large records a response is one buffer, as kmsg encodes it.
func TestAppendFrameSmall(t *testing.T) {
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = 12
	rt := kmsg.NewFetchResponseTopic()
	sp := kmsg.NewFetchResponseTopicPartition()
	sp.RecordBatches = []byte("small")
	rt.Partitions = append(rt.Partitions, sp)
	resp.Topics = append(resp.Topics, rt)
	frame, pieces, size := appendFrame(nil, 5, true, resp)
	if pieces != nil || size != len(frame) {
		t.Fatalf("small response split: %d pieces, size %d of %d", len(pieces), size, len(frame))
	}
	ref := append([]byte{0, 0, 0, 0, 0, 0, 0, 5, 0}, resp.AppendTo(nil)...)
	binary.BigEndian.PutUint32(ref, uint32(len(ref)-4))
	if !bytes.Equal(frame, ref) {
		t.Fatal("small response encoded differently from kmsg")
	}
}
