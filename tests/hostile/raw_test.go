package hostile_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawConn is a hand-driven Kafka connection: requests framed by kmsg and
// written as they are, so an attack can send what no client would.
type rawConn struct {
	net.Conn
	corr int32
	fmt  *kmsg.RequestFormatter
}

func dialRaw(addr string) (*rawConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &rawConn{Conn: c, fmt: kmsg.NewRequestFormatter(kmsg.FormatterClientID("hostile"))}, nil
}

// send writes req without waiting for its answer and returns its
// correlation ID.
func (c *rawConn) send(req kmsg.Request) (int32, error) {
	c.corr++
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Write(c.fmt.AppendRequest(nil, req, c.corr))
	return c.corr, err
}

// recv reads the next answer, which must be to req with correlation corr.
func (c *rawConn) recv(req kmsg.Request, corr int32, timeout time.Duration) (kmsg.Response, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	body, err := readFrame(c, 64<<20)
	if err != nil {
		return nil, err
	}
	if len(body) < 4 || int32(binary.BigEndian.Uint32(body)) != corr {
		return nil, fmt.Errorf("answer of %d bytes is not to correlation ID %d", len(body), corr)
	}
	body = body[4:]
	if req.IsFlexible() && req.Key() != kmsg.ApiVersions.Int16() {
		// Response header v1: a tagged-field section, empty in practice.
		if len(body) == 0 || body[0] != 0 {
			return nil, fmt.Errorf("unexpected response header tags")
		}
		body = body[1:]
	}
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	if err := resp.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("decoding %T: %w", resp, err)
	}
	return resp, nil
}

func (c *rawConn) roundTrip(req kmsg.Request, timeout time.Duration) (kmsg.Response, error) {
	corr, err := c.send(req)
	if err != nil {
		return nil, err
	}
	return c.recv(req, corr, timeout)
}

// readFrame reads one size-prefixed frame of at most max bytes.
func readFrame(r io.Reader, max int) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, err
	}
	n := int32(binary.BigEndian.Uint32(size[:]))
	if n < 0 || int(n) > max {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	body := make([]byte, n)
	_, err := io.ReadFull(r, body)
	return body, err
}

// closedWithin reports whether the peer closes c (EOF or reset) within
// timeout, reading and discarding what arrives meanwhile; it returns how
// long that took and how many bytes were drained. It reads at most max bytes:
// a connection still streaming past that is not being closed.
func closedWithin(c net.Conn, timeout time.Duration, max int64) (closed bool, after time.Duration, drained int64) {
	start := time.Now()
	c.SetReadDeadline(start.Add(timeout))
	buf := make([]byte, 256<<10)
	for drained < max {
		n, err := c.Read(buf)
		drained += int64(n)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return false, time.Since(start), drained
			}
			return true, time.Since(start), drained
		}
	}
	return false, time.Since(start), drained
}

// Record batch v2 layout offsets (Kafka's DefaultRecordBatch).
const (
	offBatchLength = 8
	offCRC         = 17
	offAttributes  = 21
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// batchSpec is a v2 record batch header; craft frames records under it
// with a valid length and CRC, so whatever it lies about, the frame checks
// cannot see.
type batchSpec struct {
	codec           int16
	numRecords      int32
	lastOffsetDelta int32
	firstTs, maxTs  int64
	producerID      int64
	producerEpoch   int16
	firstSeq        int32
}

func plainSpec(n int32, ts int64) batchSpec {
	return batchSpec{numRecords: n, lastOffsetDelta: n - 1, firstTs: ts, maxTs: ts, producerID: -1, producerEpoch: -1, firstSeq: -1}
}

func (s batchSpec) craft(records []byte) []byte {
	rb := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           s.codec,
		LastOffsetDelta:      s.lastOffsetDelta,
		FirstTimestamp:       s.firstTs,
		MaxTimestamp:         s.maxTs,
		ProducerID:           s.producerID,
		ProducerEpoch:        s.producerEpoch,
		FirstSequence:        s.firstSeq,
		NumRecords:           s.numRecords,
		Records:              records,
	}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[offBatchLength:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], crc32c))
	return b
}

// rec is one record's fields as encoded; encodeRecords writes them back
// to back with their lengths.
type rec struct {
	tsDelta, offDelta int64
	value             []byte
}

func encodeRecords(rs ...rec) []byte {
	var out []byte
	for _, r := range rs {
		body := []byte{0} // attributes
		body = binary.AppendVarint(body, r.tsDelta)
		body = binary.AppendVarint(body, r.offDelta)
		body = binary.AppendVarint(body, -1) // null key
		body = binary.AppendVarint(body, int64(len(r.value)))
		body = append(body, r.value...)
		body = binary.AppendVarint(body, 0) // no headers
		out = binary.AppendVarint(out, int64(len(body)))
		out = append(out, body...)
	}
	return out
}

// seqRecords are n records numbered 0..n-1, one millisecond apart.
func seqRecords(n int, value []byte) []byte {
	rs := make([]rec, n)
	for i := range rs {
		rs[i] = rec{tsDelta: int64(i), offDelta: int64(i), value: value}
	}
	return encodeRecords(rs...)
}

func produceReq(topic string, partition int32, batch []byte, acks int16) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(9)
	req.Acks = acks
	req.TimeoutMillis = 10_000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// produceAnswer is one partition's answer to a raw produce.
type produceAnswer struct {
	err        error // nil for success; a kerr error otherwise
	baseOffset int64
	msg        string
}

func produceRaw(c *rawConn, topic string, partition int32, batch []byte, acks int16) (produceAnswer, error) {
	resp, err := c.roundTrip(produceReq(topic, partition, batch, acks), 15*time.Second)
	if err != nil {
		return produceAnswer{}, err
	}
	pr := resp.(*kmsg.ProduceResponse)
	if len(pr.Topics) != 1 || len(pr.Topics[0].Partitions) != 1 {
		return produceAnswer{}, fmt.Errorf("produce answer has %d topics", len(pr.Topics))
	}
	p := pr.Topics[0].Partitions[0]
	a := produceAnswer{err: kerr.ErrorForCode(p.ErrorCode), baseOffset: p.BaseOffset}
	if p.ErrorMessage != nil {
		a.msg = *p.ErrorMessage
	}
	return a, nil
}

// fetchReq is a Fetch of one partition from offset, as a consumer (replica
// -1) or claiming to be broker replica with broker epoch epoch (v15+
// ReplicaState, KIP-903; below v15, ReplicaID). From v13 the topic is
// named by its ID.
func fetchReq(version int16, topic string, topicID [16]byte, partition int32, offset int64, maxBytes int32, replica int32, epoch int64) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(version)
	req.ReplicaID = replica
	if version >= 15 {
		req.ReplicaID = -1
		req.ReplicaState.ID = replica
		req.ReplicaState.Epoch = epoch
	}
	req.MaxWaitMillis = 0
	req.MinBytes = 1
	req.MaxBytes = maxBytes
	req.SessionEpoch = -1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = topic
	ft.TopicID = topicID
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition = partition
	fp.FetchOffset = offset
	fp.PartitionMaxBytes = maxBytes
	fp.CurrentLeaderEpoch = -1
	fp.LastFetchedEpoch = -1
	ft.Partitions = append(ft.Partitions, fp)
	req.Topics = append(req.Topics, ft)
	return req
}

func withTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
