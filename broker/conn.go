package broker

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// conn serves one client connection. A reader goroutine decodes requests and
// runs their handlers in arrival order (so a producer's batches are appended
// in the order sent); handlers return a reply that a writer goroutine
// resolves and writes in the same order. Up to MaxInflightPerConn requests
// are in flight: past that the reader stops reading the socket, which is
// the backpressure a Kafka client expects.
type conn struct {
	b      *Broker
	nc     net.Conn
	remote string

	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc

	refusedReplica atomic.Bool // a fetch claimed a broker's ID without its epoch (logged once)
}

// reply resolves a request's response; it may block (a produce waiting for
// fsync, a long-polling fetch). A nil response sends nothing (acks=0).
type reply func() kmsg.Response

func now(resp kmsg.Response) reply { return func() kmsg.Response { return resp } }

type inflight struct {
	start time.Time // when decoding began, for chronik_request_duration_seconds
	held  int64     // request bytes taken from Broker.reqBytes; released once answered
	key   int16
	corr  int32
	flex  bool // response header carries tagged fields
	reply reply
}

// request is a decoded request with its header.
type request struct {
	kmsg.Request
	clientID string
}

func newConn(b *Broker, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{b: b, nc: nc, remote: nc.RemoteAddr().String(), ctx: ctx, cancel: cancel}
}

func (c *conn) serve() {
	defer c.cancel()
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	queue := make(chan inflight, c.b.cfg.MaxInflightPerConn)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop(queue)
	}()
	err := c.readLoop(queue, writerDone)
	// Nobody can read an answer any more: wake long polls and waiters.
	c.cancel()
	close(queue)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		c.b.log.Debug("closing connection", "remote", c.remote, "err", err)
	}
	<-writerDone
	c.nc.Close()
}

func (c *conn) readLoop(queue chan<- inflight, writerDone <-chan struct{}) error {
	br := bufio.NewReaderSize(c.nc, 64<<10)
	var sizeBuf [4]byte
	for {
		if _, err := io.ReadFull(br, sizeBuf[:]); err != nil {
			return err
		}
		size := int32(binary.BigEndian.Uint32(sizeBuf[:]))
		if size < 8 || size > c.b.cfg.MaxRequestBytes {
			return fmt.Errorf("request frame of %d bytes is outside 8..%d (socket.request.max.bytes)", size, c.b.cfg.MaxRequestBytes)
		}
		// Each frame gets its own buffer: produce batches alias it until
		// the WAL has written them. The broker-wide budget bounds what all
		// connections hold; waiting for it stops reading this socket.
		if err := c.b.reqBytes.Acquire(c.ctx, int64(size)); err != nil {
			return err
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(br, body); err != nil {
			c.b.reqBytes.Release(int64(size))
			return err
		}
		c.b.metrics.bytesIn.Add(float64(4 + len(body)))
		f, err := c.handle(body)
		if err != nil {
			c.b.reqBytes.Release(int64(size))
			return err
		}
		f.held = int64(size)
		select {
		case queue <- f:
		case <-writerDone:
			c.b.reqBytes.Release(f.held)
			return errors.New("writer stopped")
		}
	}
}

// handle decodes one request frame and runs its handler. An error closes
// the connection, as Kafka does for requests it cannot parse.
func (c *conn) handle(body []byte) (inflight, error) {
	start := time.Now()
	r := kbin.Reader{Src: body}
	key, version, corr := r.Int16(), r.Int16(), r.Int32()
	clientID := r.NullableString()
	if !r.Ok() {
		return inflight{}, errors.New("truncated request header")
	}
	if key == int16(kmsg.ApiVersions) && !versionSupported(key, version) {
		// KIP-511: answer an unknown ApiVersions version with v0 and
		// UNSUPPORTED_VERSION so the client can retry with one we know.
		resp := c.b.apiVersionsResponse(0)
		resp.ErrorCode = kerr.UnsupportedVersion.Code
		c.b.metrics.api[key].requests.Inc()
		return inflight{start: start, key: key, corr: corr, reply: now(resp)}, nil
	}
	h := handlers[key]
	if h == nil || !versionSupported(key, version) {
		return inflight{}, fmt.Errorf("unsupported request: api key %d version %d", key, version)
	}
	kreq := kmsg.RequestForKey(key)
	kreq.SetVersion(version)
	if kreq.IsFlexible() {
		kmsg.SkipTags(&r)
	}
	if err := kreq.ReadFrom(r.Src); err != nil {
		return inflight{}, fmt.Errorf("malformed %s v%d request: %w", kmsg.NameForKey(key), version, err)
	}
	req := &request{Request: kreq}
	if clientID != nil {
		req.clientID = *clientID
	}
	resp := kreq.ResponseKind()
	c.b.metrics.api[key].requests.Inc()
	return inflight{
		start: start,
		key:   key,
		corr:  corr,
		flex:  resp.IsFlexible() && key != int16(kmsg.ApiVersions),
		reply: h(c, req),
	}, nil
}

func (c *conn) writeLoop(queue <-chan inflight) {
	bw := bufio.NewWriterSize(c.nc, 64<<10)
	var buf []byte
	for f := range queue {
		if bw.Buffered() > 0 {
			// The next reply may block (a long poll, a produce waiting for
			// fsync): send what is ready first, so a heartbeat answer never
			// waits behind a fetch.
			if err := bw.Flush(); err != nil {
				c.nc.Close()
				releaseReply(f.reply())
				c.b.reqBytes.Release(f.held)
				break
			}
		}
		resp := f.reply()
		c.b.reqBytes.Release(f.held) // the request's buffers are done with
		if resp == nil {
			c.b.metrics.requestDone(f.key, f.start, nil)
			continue
		}
		var pieces net.Buffers
		var size int
		buf, pieces, size = appendFrame(buf[:0], f.corr, f.flex, resp)
		var err error
		if pieces == nil {
			_, err = bw.Write(buf)
		} else if err = bw.Flush(); err == nil {
			// Large record bytes go straight from their buffers (fetch_write.go).
			_, err = pieces.WriteTo(c.nc)
		}
		releaseReply(resp) // its bytes are in the socket or in buf
		if err != nil {
			c.nc.Close()
			break
		}
		if len(queue) == 0 {
			if err := bw.Flush(); err != nil {
				c.nc.Close()
				break
			}
		}
		c.b.metrics.bytesOut.Add(float64(size))
		c.b.metrics.requestDone(f.key, f.start, unwrapResponse(resp))
		if cap(buf) > 1<<20 {
			buf = nil // don't pin one huge fetch response per connection
		}
	}
	// Drain so the reader never blocks on a full queue after a write error;
	// each reply still runs so its request's bytes are released only once
	// its work (a produce's WAL write) no longer needs them.
	for f := range queue {
		releaseReply(f.reply())
		c.b.reqBytes.Release(f.held)
	}
}
