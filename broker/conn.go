package broker

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/security"
)

// conn serves one client connection. A reader goroutine decodes requests and
// runs their handlers in arrival order (so a producer's batches are appended
// in the order sent); handlers return a reply that a writer goroutine
// resolves and writes in the same order. Up to MaxInflightPerConn requests
// are in flight: past that the reader stops reading the socket, which is
// the backpressure a Kafka client expects. What a slow, idle or
// non-reading peer may hold is bounded in conn_limits.go.
type conn struct {
	b      *Broker
	nc     net.Conn // a *tls.Conn on SSL and SASL_SSL listeners
	ln     *listener
	remote string
	ip     netip.Addr // remote IP (zero when not IP), for the per-IP cap
	host   string     // remote IP as ACLs name hosts

	// auth is who the connection is and how far its SASL exchange went
	// (security.go); owned by the reader goroutine, where every handler
	// runs.
	auth connAuth

	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc

	refusedReplica atomic.Bool // a fetch claimed a broker's ID without its epoch (logged once)

	// inflight counts requests read and not yet answered; lastDone is when
	// the writer last finished one (UnixNano). An idle connection has
	// neither inflight requests nor a recent answer.
	inflight atomic.Int64
	lastDone atomic.Int64

	closeOnce sync.Once

	unsentMu    sync.Mutex    // guards the following
	unsent      int64         // fetch response bytes reserved and not yet written
	unsentFreed chan struct{} // closed when unsent drops; nil when nobody waits
}

// reply resolves a request's response; it may block (a produce waiting for
// fsync, a long-polling fetch). A nil response sends nothing (acks=0).
type reply func() kmsg.Response

func now(resp kmsg.Response) reply { return func() kmsg.Response { return resp } }

type inflight struct {
	start  time.Time // when decoding began, for chronik_request_duration_seconds
	held   int64     // request bytes taken from Broker.reqBytes; released once answered
	unsent int64     // bytes reserved by reserveUnsent; released once written
	key    int16
	corr   int32
	flex   bool // response header carries tagged fields
	reply  reply
	// raw, when set, is a bare SASL token answering a bare token (SASL
	// after SaslHandshake v0): written with its length only.
	raw []byte
}

// request is a decoded request with its header.
type request struct {
	kmsg.Request
	clientID string
}

// newConn makes the connection nc accepted on ln from ip (remoteIP(nc)).
func newConn(b *Broker, nc net.Conn, ln *listener, ip netip.Addr) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{b: b, nc: nc, ln: ln, remote: nc.RemoteAddr().String(), ip: ip, ctx: ctx, cancel: cancel}
	c.host = c.remoteHost()
	if c.ip.IsValid() {
		c.host = c.ip.String() // IPv4-mapped addresses unmapped, as ACL hosts are
	}
	c.auth.principal = security.AnonymousPrincipal
	if ln.Protocol.SASL() {
		c.auth.phase = saslStart
	}
	c.lastDone.Store(time.Now().UnixNano())
	return c
}

// closeFor ends the connection because of err: the socket is closed and
// every wait of the connection woken. A close the broker chose (a
// timeout) is counted and logged once.
// remoteHost is the client's IP address (or its whole address when it
// has no port).
func (c *conn) remoteHost() string {
	host, _, err := net.SplitHostPort(c.remote)
	if err != nil {
		return c.remote
	}
	return host
}

func (c *conn) closeFor(err error) {
	c.closeOnce.Do(func() {
		if reason := closeReason(err); reason != "" {
			c.b.metrics.connsClosed.inc(reason)
			c.b.log.Debug("closing connection", "remote", c.remote, "reason", reason)
		} else if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			c.b.log.Debug("closing connection", "remote", c.remote, "err", err)
		}
	})
	c.cancel()
	c.nc.Close()
}

func (c *conn) serve() {
	defer c.cancel()
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true) // Go's default; a TLS connection's socket has it too
	}
	if err := c.handshakeTLS(); err != nil {
		c.closeFor(err)
		return
	}
	queue := make(chan inflight, c.b.cfg.MaxInflightPerConn)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop(queue)
	}()
	err := c.readLoop(queue, writerDone)
	if closeReason(err) != "" {
		c.closeFor(err) // the broker gives up on the peer: now
	}
	// No request follows: wake long polls and waiters, and let the writer
	// send what is answered (a client may half-close after its requests).
	c.cancel()
	close(queue)
	<-writerDone
	c.closeFor(err)
}

func (c *conn) readLoop(queue chan<- inflight, writerDone <-chan struct{}) error {
	br := bufio.NewReaderSize(c.nc, readChunk)
	var sizeBuf [4]byte
	for {
		if err := c.awaitFrame(br); err != nil {
			return err
		}
		var deadline time.Time // the whole frame must arrive by then
		if t := c.b.cfg.RequestReadTimeout; t > 0 {
			deadline = time.Now().Add(t)
		}
		c.nc.SetReadDeadline(deadline)
		if _, err := io.ReadFull(br, sizeBuf[:]); err != nil {
			return readErr(err)
		}
		size := int32(binary.BigEndian.Uint32(sizeBuf[:]))
		least := int32(8) // a request header
		if c.auth.phase == saslRawTokens {
			least = 1 // a bare SASL token: "\x00u\x00p" is PLAIN's for user u
		}
		if size < least || size > c.b.cfg.MaxRequestBytes {
			return fmt.Errorf("request frame of %d bytes is outside %d..%d (socket.request.max.bytes)", size, least, c.b.cfg.MaxRequestBytes)
		}
		body, err := c.readBody(br, int(size), deadline)
		if err != nil {
			return err
		}
		c.b.metrics.bytesIn.Add(float64(4 + len(body)))
		c.inflight.Add(1)
		f, err := c.handle(body)
		if err != nil {
			c.inflight.Add(-1)
			c.b.reqBytes.Release(int64(size))
			return err
		}
		f.held = int64(size)
		select {
		case queue <- f:
		case <-writerDone:
			c.b.reqBytes.Release(f.held)
			c.releaseUnsent(f.unsent)
			return errors.New("writer stopped")
		}
		if c.auth.failed {
			// Kafka closes a connection whose authentication failed,
			// once the failure is sent.
			return errAuthFailed
		}
	}
}

// readChunk is the socket read buffer and the first room given to a frame
// body once its bytes arrive.
const readChunk = 64 << 10

func readErr(err error) error {
	if isTimeout(err) {
		return errReadTimeout
	}
	return err
}

// awaitFrame waits for the first byte of the next frame. A connection with
// no request in flight that received nothing for ConnectionsMaxIdle is
// closed (errIdle); one whose requests are still being answered is not.
func (c *conn) awaitFrame(br *bufio.Reader) error {
	if br.Buffered() > 0 {
		return nil
	}
	idle := c.b.cfg.ConnectionsMaxIdle
	var deadline time.Time
	if idle > 0 {
		deadline = time.Now().Add(idle)
	}
	for {
		c.nc.SetReadDeadline(deadline)
		_, err := br.Peek(1)
		if err == nil || !isTimeout(err) {
			return err
		}
		now := time.Now()
		switch last := time.Unix(0, c.lastDone.Load()); {
		case c.inflight.Load() > 0:
			deadline = now.Add(idle)
		case now.Sub(last) < idle:
			deadline = last.Add(idle)
		default:
			return errIdle
		}
	}
}

// readBody reads a frame body of size bytes as they arrive. The buffer,
// and the broker-wide request budget (QueuedMaxRequestBytes) it is
// charged to, grow only once bytes are here and to at most four times
// what arrived (at least readChunk): a peer that announced a large frame
// and sends nothing holds neither. Growing fourfold, not twofold, keeps
// the copies and garbage of a large frame at a third of its size.
// Waiting for budget is bounded by deadline too, so connections each
// holding part of the budget while their senders stall are closed and
// the budget comes back. Large reads go from the socket straight into
// the body. On error nothing stays held; on success the budget held is
// size.
func (c *conn) readBody(br *bufio.Reader, size int, deadline time.Time) ([]byte, error) {
	var body []byte
	fail := func(err error) ([]byte, error) {
		c.b.reqBytes.Release(int64(cap(body)))
		return nil, err
	}
	for len(body) < size {
		if len(body) == cap(body) {
			if br.Buffered() == 0 {
				if _, err := br.Peek(1); err != nil { // wait for bytes before taking room for them
					return fail(readErr(err))
				}
			}
			grow := min(size, max(4*cap(body), readChunk)) - cap(body)
			if err := c.acquireReq(int64(grow), deadline); err != nil {
				return fail(err)
			}
			grown := make([]byte, len(body), cap(body)+grow)
			copy(grown, body)
			body = grown
		}
		n, err := br.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if err != nil && len(body) < size {
			return fail(readErr(err))
		}
	}
	return body, nil
}

// acquireReq takes n bytes of the broker-wide request budget, waiting no
// later than deadline (zero: as long as the connection lives).
func (c *conn) acquireReq(n int64, deadline time.Time) error {
	if c.b.reqBytes.TryAcquire(n) {
		return nil
	}
	ctx := c.ctx
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	if err := c.b.reqBytes.Acquire(ctx, n); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return errReadTimeout
		}
		return err
	}
	return nil
}

// handle decodes one request frame and runs its handler. An error closes
// the connection, as Kafka does for requests it cannot parse.
func (c *conn) handle(body []byte) (inflight, error) {
	start := time.Now()
	if c.auth.phase == saslRawTokens {
		// After SaslHandshake v0 the client sends bare SASL tokens, not
		// Kafka requests.
		return c.rawSASLToken(start, body)
	}
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
	if err := c.auth.admits(key); err != nil {
		return inflight{}, err
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
	var unsent int64
	if fr, ok := kreq.(*kmsg.FetchRequest); ok {
		// Fetches build their responses at once: a client that does not
		// read them must not make the broker build more.
		var err error
		if unsent, err = c.reserveUnsent(c.b.fetchBound(fr)); err != nil {
			return inflight{}, err
		}
	}
	return inflight{
		start:  start,
		key:    key,
		corr:   corr,
		flex:   resp.IsFlexible() && key != int16(kmsg.ApiVersions),
		unsent: unsent,
		reply:  h(c, req),
	}, nil
}

func (c *conn) writeLoop(queue <-chan inflight) {
	bw := bufio.NewWriterSize(connWriter{c}, 64<<10)
	var buf []byte
	var err error
	for f := range queue {
		if bw.Buffered() > 0 {
			// The next reply may block (a long poll, a produce waiting for
			// fsync): send what is ready first, so a heartbeat answer never
			// waits behind a fetch.
			if err = bw.Flush(); err != nil {
				c.drop(f)
				break
			}
		}
		if f.raw != nil {
			c.b.reqBytes.Release(f.held)
			_, err = bw.Write(binary.BigEndian.AppendUint32(buf[:0], uint32(len(f.raw))))
			if err == nil {
				_, err = bw.Write(f.raw)
			}
			if err == nil {
				err = bw.Flush()
			}
			c.done(f)
			if err != nil {
				break
			}
			continue
		}
		resp := f.reply()
		c.b.reqBytes.Release(f.held) // the request's buffers are done with
		if resp == nil {
			c.done(f)
			c.b.metrics.requestDone(f.key, f.start, nil)
			continue
		}
		var pieces net.Buffers
		var size int
		buf, pieces, size = appendFrame(buf[:0], f.corr, f.flex, resp)
		if pieces == nil {
			_, err = bw.Write(buf)
		} else if err = bw.Flush(); err == nil {
			// Large record bytes go straight from their buffers (fetch_write.go).
			err = c.writeBuffers(pieces)
		}
		releaseReply(resp) // its bytes are in the socket or in buf
		if err == nil && len(queue) == 0 {
			err = bw.Flush()
		}
		c.done(f)
		if err != nil {
			break
		}
		c.b.metrics.bytesOut.Add(float64(size))
		c.b.metrics.requestDone(f.key, f.start, unwrapResponse(resp))
		if cap(buf) > 1<<20 {
			buf = nil // don't pin one huge fetch response per connection
		}
	}
	if err != nil {
		c.closeFor(err)
	}
	// Drain so the reader never blocks on a full queue after a write error;
	// each reply still runs so its request's bytes are released only once
	// its work (a produce's WAL write) no longer needs them.
	for f := range queue {
		c.drop(f)
	}
}

// done marks f answered: what it reserved is released and the connection's
// idle clock restarts.
func (c *conn) done(f inflight) {
	c.releaseUnsent(f.unsent)
	c.lastDone.Store(time.Now().UnixNano())
	c.inflight.Add(-1)
}

// drop waits for f's reply and discards it: the connection is gone.
func (c *conn) drop(f inflight) {
	releaseReply(f.reply())
	c.b.reqBytes.Release(f.held)
	c.done(f)
}
