package broker

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/replication"
)

// Followers pull from leaders the Kafka way: one fetcher per source broker
// fetching all the partitions this broker follows there in one request,
// appending through this broker's own WAL, and fetching again only once
// those appends are fsynced, so the next fetch offset tells the leader what
// is durable here.

// fetchers owns the running fetchers, one per leader broker.
type fetchers struct {
	mu      sync.Mutex
	running map[int32]*fetcher // by leader broker ID
	wg      sync.WaitGroup
}

type fetcher struct {
	b      *Broker
	leader int32
	addr   string
	cancel context.CancelFunc

	mu    sync.Mutex
	parts []*partition // partitions followed from this leader
	// truncate holds partitions that must truncate to their high watermark
	// before fetching (a new leader epoch).
	truncate map[*partition]bool
	// changed says a partition was newly followed (a topic just created,
	// a leadership just moved here) or newly to truncate since once last
	// read parts; cutRound, set while a fetch is in flight, ends it. Such a
	// partition must not wait out the leader's long poll of the others.
	changed  bool
	cutRound func()

	// delayed holds partitions the leader last answered with an error (it
	// has not applied their leadership yet, or no longer leads them) and
	// when they are fetched again: an error answers a fetch at once, so
	// fetching them every round would spin. Only run's goroutine uses it.
	delayed map[*partition]time.Time
}

// fetchErrorBackoff is how long a partition the leader answered with an
// error sits out (Kafka's replica.fetch.backoff.ms, shorter: leadership
// here moves in milliseconds).
const fetchErrorBackoff = 50 * time.Millisecond

// changedLocked records a partition newly followed or newly to truncate
// and cuts the fetch in flight short, so the next fetch starts at once.
// f.mu must be held.
func (f *fetcher) changedLocked() {
	f.changed = true
	if f.cutRound != nil {
		f.cutRound()
		f.cutRound = nil
	}
}

// syncReplication applies the controller's leadership and ISR to every local
// partition and (re)assigns fetchers. Called by the reconciler.
func (b *Broker) syncReplication(st *replication.State) {
	me := b.cfg.NodeID
	want := map[int32][]*partition{}
	var newEpoch []*partition
	for _, t := range b.snapshotTopics() {
		ti := st.Topics[t.name]
		if ti == nil || [16]byte(ti.ID) != t.id {
			continue
		}
		minISR := int(b.configInt(t, "min.insync.replicas"))
		b.mu.RLock()
		parts := t.partitions
		b.mu.RUnlock()
		for i, p := range parts {
			if i >= len(ti.Partitions) {
				break
			}
			ps := ti.Partitions[i]
			if p.setLeadership(me, ps.Leader, ps.LeaderEpoch, ps.ISR, ps.Replicas, minISR) {
				newEpoch = append(newEpoch, p)
			}
			if ps.Leader >= 0 && ps.Leader != me && slices.Contains(ps.Replicas, me) {
				want[ps.Leader] = append(want[ps.Leader], p)
			}
			if !slices.Contains(ps.Replicas, me) && ps.Adopted == nil {
				// Not a replica here (a reassignment moved it away), and
				// not one being adopted from what the brokers hold.
				b.dropUnconfirmedTail(p)
			}
		}
	}
	trunc := map[*partition]bool{}
	for _, p := range newEpoch {
		trunc[p] = true
	}
	f := &b.fetchers
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running == nil {
		f.running = map[int32]*fetcher{}
	}
	for id, ft := range f.running {
		bi := st.Brokers[id]
		if len(want[id]) == 0 || bi == nil || ft.addr != bi.InternalAddr() {
			ft.cancel()
			delete(f.running, id)
		}
	}
	for id, parts := range want {
		ft := f.running[id]
		if ft == nil {
			bi := st.Brokers[id]
			if bi == nil {
				continue
			}
			ctx, cancel := b.ctxUntilClose(context.Background())
			ft = &fetcher{b: b, leader: id, addr: bi.InternalAddr(), cancel: cancel, truncate: map[*partition]bool{}}
			f.running[id] = ft
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				ft.run(ctx)
			}()
		}
		// The partitions and their truncation flags change together, so
		// the fetcher never fetches a partition under a new epoch before
		// truncating it; flags of partitions it no longer follows go.
		ft.mu.Lock()
		followed := make(map[*partition]bool, len(ft.parts))
		for _, p := range ft.parts {
			followed[p] = true
		}
		ft.parts = parts
		for p := range ft.truncate {
			if !slices.Contains(parts, p) {
				delete(ft.truncate, p)
			}
		}
		changed := false
		for _, p := range parts {
			if trunc[p] && !ft.truncate[p] {
				ft.truncate[p] = true
				changed = true
			}
			changed = changed || !followed[p]
		}
		if changed {
			ft.changedLocked()
		}
		ft.mu.Unlock()
	}
}

func (f *fetcher) run(ctx context.Context) {
	b := f.b
	var cl *kgo.Client
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		if cl == nil {
			var err error
			cl, err = kgo.NewClient(append(f.b.interBrokerOpts(), kgo.SeedBrokers(f.addr), kgo.DialTimeout(2*time.Second), kgo.RequestRetries(0))...)
			if err != nil {
				b.log.Error("replica fetcher: client", "leader", f.leader, "err", err)
				return
			}
		}
		err := f.once(ctx, cl)
		switch {
		case errors.Is(err, errFetchCut):
			// The fetch in flight was abandoned with its connection (a
			// request on the wire cannot be withdrawn; cutRound closed
			// the client): the next one goes on a new connection, at once.
			cl = nil
			continue
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			b.log.Debug("replica fetch failed", "leader", f.leader, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
	}
}

// errFetchCut is once's answer when changedLocked cut its fetch short.
var errFetchCut = errors.New("replica fetch cut short: the partitions followed changed")

// once truncates what must be truncated, sends one fetch, appends what it
// returns and waits until that is durable.
func (f *fetcher) once(ctx context.Context, cl *kgo.Client) error {
	b := f.b
	f.mu.Lock()
	parts := f.parts
	trunc := f.truncate
	f.truncate = map[*partition]bool{}
	f.changed = false
	f.mu.Unlock()
	// Partitions still to truncate are not fetched this round; the others
	// are, whatever happens to these.
	var pending map[*partition]bool
	if len(trunc) > 0 {
		pending = f.truncateDiverged(ctx, cl, trunc)
		if len(pending) > 0 {
			f.mu.Lock()
			for p := range pending {
				if slices.Contains(f.parts, p) { // still followed from here
					f.truncate[p] = true
				}
			}
			f.mu.Unlock()
		}
	}
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = b.cfg.NodeID
	req.ReplicaState.ID = b.cfg.NodeID
	req.ReplicaState.Epoch = -1
	if self := b.ctl.Self(); self != nil {
		req.ReplicaState.Epoch = self.Epoch() // proves the fetch is this broker's (KIP-903)
	}
	wait := b.cfg.ReplicaFetchWaitMax
	if len(pending) > 0 {
		// A truncation the leader could not answer yet (it has not applied
		// the partition's leadership) is retried soon, not after the
		// others' long poll.
		wait = fetchErrorBackoff
	}
	now := time.Now()
	req.MinBytes = 1
	req.MaxBytes = 16 << 20
	byTopic := map[[16]byte]int{}
	epochs := map[*partition]int32{} // the epoch each partition was fetched under
	for _, p := range parts {
		p.mu.RLock()
		epoch, leader, end := p.repl.epoch, p.repl.leader, p.hw
		p.mu.RUnlock()
		if leader || pending[p] {
			continue
		}
		if until, ok := f.delayed[p]; ok {
			if left := until.Sub(now); left > 0 {
				wait = min(wait, left) // back in the round after next
				continue
			}
			delete(f.delayed, p)
		}
		epochs[p] = epoch
		i, ok := byTopic[p.topic.id]
		if !ok {
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic, rt.TopicID = p.topic.name, p.topic.id
			req.Topics = append(req.Topics, rt)
			i = len(req.Topics) - 1
			byTopic[p.topic.id] = i
		}
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.CurrentLeaderEpoch = p.index, end, epoch
		rp.LastFetchedEpoch, rp.LogStartOffset = -1, -1
		rp.PartitionMaxBytes = 4 << 20
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
	}
	for p := range f.delayed {
		if !slices.Contains(parts, p) {
			delete(f.delayed, p)
		}
	}
	if len(req.Topics) == 0 {
		select {
		case <-ctx.Done():
		case <-time.After(min(wait, 100*time.Millisecond)):
		}
		return nil
	}
	req.MaxWaitMillis = int32(max(wait.Milliseconds(), 1))
	seeds := cl.SeedBrokers()
	if len(seeds) == 0 {
		return errors.New("no seed broker")
	}
	rctx, cancel := context.WithTimeout(ctx, b.cfg.ReplicaFetchWaitMax+10*time.Second)
	defer cancel()
	rctx, cut := context.WithCancelCause(rctx)
	defer cut(nil)
	f.mu.Lock()
	if f.changed {
		// Changed since parts was read: ask again with the change.
		f.mu.Unlock()
		return nil
	}
	f.cutRound = func() {
		cut(errFetchCut)
		// franz-go does not give up on a fetch whose request is on the
		// wire when its context ends; closing the client does.
		go cl.Close()
	}
	f.mu.Unlock()
	kresp, err := seeds[0].Request(rctx, req)
	f.mu.Lock()
	f.cutRound = nil
	f.mu.Unlock()
	if errors.Is(context.Cause(rctx), errFetchCut) {
		// Whatever came back is dropped with the connection; the next
		// fetch asks for it again, with what changed.
		return errFetchCut
	}
	if err != nil {
		return err
	}
	resp := kresp.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return err
	}
	byKey := map[[16]byte]*topic{}
	for _, p := range parts {
		byKey[p.topic.id] = p.topic
	}
	var waits []*appendResult
	var hws []func()
	var tiered []*partition
	for _, rt := range resp.Topics {
		t := byKey[rt.TopicID]
		if t == nil {
			t = b.lookupTopic(rt.Topic)
		}
		if t == nil {
			continue
		}
		for _, rp := range rt.Partitions {
			p := b.partitionOf(t, rp.Partition)
			if p == nil {
				continue
			}
			switch err := kerr.ErrorForCode(rp.ErrorCode); {
			case err == nil:
			case errors.Is(err, kerr.OffsetOutOfRange):
				p.mu.RLock()
				end := p.hw
				p.mu.RUnlock()
				if rp.LogStartOffset > end {
					// The leader no longer holds what this follower lacks
					// (retention, DeleteRecords): start over at its log
					// start, as Kafka's followers do.
					if err := b.jumpTo(p, rp.LogStartOffset); err != nil {
						return err
					}
					continue
				}
				// This follower is ahead of the leader: its tail past the
				// high watermark was never committed.
				f.mu.Lock()
				f.truncate[p] = true
				f.mu.Unlock()
				continue
			case errors.Is(err, kerr.OffsetMovedToTieredStorage):
				tiered = append(tiered, p)
				continue
			default:
				// Leadership moving; metadata will follow.
				if f.delayed == nil {
					f.delayed = map[*partition]time.Time{}
				}
				f.delayed[p] = time.Now().Add(fetchErrorBackoff)
				continue
			}
			epoch, ok := epochs[p]
			if !ok {
				continue
			}
			res, err := p.appendReplica(ctx, b.wal, rp.RecordBatches, epoch)
			switch {
			case errors.Is(err, errStaleFetch):
				continue
			case errors.Is(err, errDiverged), errors.Is(err, errBadReplicaBatch):
				// Neither the leader's high watermark nor its log start
				// apply to a log that does not match the leader's.
				b.log.Warn("replicated data does not continue the local log; truncating", "topic", p.topic.name, "partition", p.index, "err", err)
				f.mu.Lock()
				f.truncate[p] = true
				f.mu.Unlock()
				if res != nil {
					waits = append(waits, res)
				}
				continue
			case err != nil:
				return err
			}
			if res != nil {
				waits = append(waits, res)
			}
			hw, logStart := rp.HighWatermark, rp.LogStartOffset
			hws = append(hws, func() {
				p.setFollowerHW(hw)
				// The leader's log start (retention, DeleteRecords) holds
				// for its replicas too.
				p.mu.RLock()
				end := p.hw
				p.mu.RUnlock()
				if ls := min(logStart, end); ls > 0 {
					if err := b.advanceLogStart(p, ls); err != nil {
						b.log.Error("advance log start to the leader's failed", "topic", p.topic.name, "partition", p.index, "err", err)
					}
				}
			})
		}
	}
	for _, w := range waits {
		select {
		case <-w.done:
			if w.err != nil {
				return w.err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, set := range hws {
		set()
	}
	if len(tiered) > 0 {
		return f.startAtLocalLogStart(ctx, cl, tiered)
	}
	return nil
}

// startAtLocalLogStart restarts each partition's log at the leader's local
// log start: the leader answered that what this follower lacks below it is
// only in the archive (OFFSET_MOVED_TO_TIERED_STORAGE). The log start does
// not move; reads below the local log are served from the archive.
func (f *fetcher) startAtLocalLogStart(ctx context.Context, cl *kgo.Client, parts []*partition) error {
	b := f.b
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = b.cfg.NodeID
	byTopic := map[string]int{}
	for _, p := range parts {
		i, ok := byTopic[p.topic.name]
		if !ok {
			rt := kmsg.NewListOffsetsRequestTopic()
			rt.Topic = p.topic.name
			req.Topics = append(req.Topics, rt)
			i = len(req.Topics) - 1
			byTopic[p.topic.name] = i
		}
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p.index, listEarliestLoc
		p.mu.RLock()
		rp.CurrentLeaderEpoch = p.repl.epoch
		p.mu.RUnlock()
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kresp, err := cl.SeedBrokers()[0].Request(rctx, req)
	if err != nil {
		return err
	}
	for _, rt := range kresp.(*kmsg.ListOffsetsResponse).Topics {
		t := b.lookupTopic(rt.Topic)
		for _, rp := range rt.Partitions {
			p := b.partitionOf(t, rp.Partition)
			if p == nil || rp.ErrorCode != 0 || rp.Offset < 0 {
				continue
			}
			if err := b.startLocalLogAt(p, rp.Offset); err != nil {
				return err
			}
			b.log.Info("follower starts its local log at the leader's local log start; the archive holds what lies below",
				"topic", p.topic.name, "partition", p.index, "offset", rp.Offset)
		}
	}
	return nil
}

// truncateDiverged cuts each partition's log where the leader's log diverges from
// it (KIP-101): the leader answers, for this follower's newest epoch, where
// that epoch ends in its log; everything here from there on was never
// committed. Without an answer (no epochs known here yet) the follower cuts
// at its high watermark instead.
func (f *fetcher) truncateDiverged(ctx context.Context, cl *kgo.Client, parts map[*partition]bool) (pending map[*partition]bool) {
	b := f.b
	req := kmsg.NewPtrOffsetForLeaderEpochRequest()
	req.ReplicaID = b.cfg.NodeID
	byTopic := map[string]int{}
	type want struct {
		p    *partition
		last int32
	}
	wants := map[string]map[int32]want{}
	for p := range parts {
		last := p.lastEpoch()
		p.mu.RLock()
		cur := p.repl.epoch
		p.mu.RUnlock()
		i, ok := byTopic[p.topic.name]
		if !ok {
			rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
			rt.Topic = p.topic.name
			req.Topics = append(req.Topics, rt)
			i = len(req.Topics) - 1
			byTopic[p.topic.name] = i
			wants[p.topic.name] = map[int32]want{}
		}
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.Partition, rp.CurrentLeaderEpoch, rp.LeaderEpoch = p.index, cur, last
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
		wants[p.topic.name][p.index] = want{p, last}
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kresp, err := cl.SeedBrokers()[0].Request(rctx, req)
	if err != nil {
		b.log.Debug("OffsetForLeaderEpoch failed", "leader", f.leader, "err", err)
		return parts
	}
	pending = map[*partition]bool{}
	for _, rt := range kresp.(*kmsg.OffsetForLeaderEpochResponse).Topics {
		for _, rp := range rt.Partitions {
			w, ok := wants[rt.Topic][rp.Partition]
			if !ok {
				continue
			}
			delete(wants[rt.Topic], rp.Partition)
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				pending[w.p] = true // leadership still moving: retry this one
				continue
			}
			w.p.mu.RLock()
			to := w.p.repl.hwm
			if w.last >= 0 && rp.LeaderEpoch >= 0 && rp.EndOffset >= 0 {
				// KIP-279: the leader answers for the largest epoch it has
				// at or below ours. Our log agrees with it up to where
				// that epoch ends there, and no further than where our
				// own next epoch begins.
				to = rp.EndOffset
				for _, e := range w.p.epochs {
					if e.Epoch > rp.LeaderEpoch {
						to = min(to, e.Start)
						break
					}
				}
			}
			w.p.mu.RUnlock()
			if err := w.p.truncateTo(ctx, b.wal, to); err != nil {
				b.log.Error("truncate failed", "topic", w.p.topic.name, "partition", w.p.index, "err", err)
				pending[w.p] = true
			}
		}
	}
	for _, ws := range wants {
		for _, w := range ws {
			pending[w.p] = true // not answered
		}
	}
	return pending
}

// isrLoop is the leader's side of ISR maintenance: a follower that has not
// caught up for replica.lag.time.max leaves the ISR; one that has caught up
// to the high watermark rejoins it. Both are controller proposals.
func (b *Broker) isrLoop() {
	defer b.maintWG.Done()
	const tick = 250 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	var last time.Time // the previous tick at which this broker was current
	for {
		select {
		case <-b.closing:
			return
		case <-t.C:
		}
		now := time.Now()
		if !b.ctl.Current() {
			last = time.Time{}
			continue
		}
		if last.IsZero() || now.Sub(last) > 4*tick {
			// This broker was cut off or paused: its followers could not
			// fetch from it either, so their lag says nothing. Give each a
			// fresh window instead of shrinking every ISR on return.
			for _, p := range b.allPartitions() {
				p.mu.Lock()
				for _, f := range p.repl.followers {
					f.caughtUp = now
				}
				p.mu.Unlock()
			}
		}
		last = now
		for _, p := range b.allPartitions() {
			p.mu.RLock()
			r := p.repl
			var next []int32
			changed := false
			if r.on && r.leader {
				for _, id := range r.replicas {
					f := r.followers[id]
					in := slices.Contains(r.isr, id)
					switch {
					case id == r.me:
						next = append(next, id)
					case in && f != nil && now.Sub(f.caughtUp) > b.cfg.ReplicaLagTimeMax:
						changed = true // shrink
					case !in && f != nil && f.leo >= r.hwm && f.leo >= 0 && b.ctl.State().Live(id):
						next = append(next, id) // expand
						changed = true
					case in:
						next = append(next, id)
					}
				}
			}
			epoch, from := r.epoch, r.isr
			p.mu.RUnlock()
			if !changed {
				continue
			}
			if len(next) > len(from) {
				// Expanding: count the new member in the high watermark
				// from now on (KIP-497's maximal ISR), so it never becomes
				// electable missing what this leader acknowledges
				// meanwhile. The next sync restores the committed ISR if
				// the change fails.
				p.mu.Lock()
				if p.repl.leader && p.repl.epoch == epoch {
					p.repl.isr = next
				}
				p.mu.Unlock()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := b.ctl.Propose(ctx, &replication.Request{ChangeISR: &replication.ChangeISR{
				TopicRef: replication.TopicRef{Name: p.topic.name, ID: p.topic.id}, Partition: p.index,
				Leader: b.cfg.NodeID, LeaderEpoch: epoch, ISR: next, From: from,
			}})
			cancel()
			if err != nil {
				b.log.Debug("ISR change not applied", "topic", p.topic.name, "partition", p.index, "err", err)
			} else {
				b.log.Info("ISR changed", "topic", p.topic.name, "partition", p.index, "isr", next)
				if len(next) < len(from) {
					b.metrics.isrShrinks.Inc()
				} else {
					b.metrics.isrExpands.Inc()
				}
			}
		}
	}
}

// dropUnconfirmedTail cuts, in the background, the records of a partition
// this broker no longer replicates (a reassignment moved it away) that lie
// above the high watermark it last heard of: they were never confirmed
// here, would never be sealed (sealing stops at the high watermark), and
// would keep the write-ahead log's segments from being trimmed.
func (b *Broker) dropUnconfirmedTail(p *partition) {
	p.mu.RLock()
	hwm, end, on := p.repl.hwm, p.hw, p.repl.on
	p.mu.RUnlock()
	if !on || end <= hwm || !p.tailDropping.CompareAndSwap(false, true) {
		return
	}
	b.maintWG.Add(1)
	go func() {
		defer b.maintWG.Done()
		defer p.tailDropping.Store(false)
		ctx, cancel := b.ctxUntilClose(context.Background())
		defer cancel()
		if err := p.truncateTo(ctx, b.wal, hwm); err != nil {
			b.log.Warn("dropping the unconfirmed records of a partition no longer replicated here failed; retrying", "topic", p.topic.name,
				"partition", p.index, "err", err)
		}
	}()
}
