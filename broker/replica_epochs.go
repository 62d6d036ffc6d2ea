package broker

import (
	"encoding/binary"

	"github.com/chronik-go/chronik/tier2"
)

// The leader-epoch cache: where each leader epoch's records begin in a
// partition's log, oldest first, as Kafka's leader-epoch-checkpoint. It is
// built as batches are appended (a leader stamps its epoch into every batch
// it appends; a follower reads the epoch from the batches it fetches),
// rebuilt from the WAL on recovery, cut on truncation, and checkpointed in
// the partition's directory whenever it changes, so epochs whose records
// were sealed (and left the WAL) survive restarts.

// noteEpochLocked records that batch base starts epoch if it is newer than
// the last known one, and reports whether the cache changed. p.mu must be
// held (write).
func (p *partition) noteEpochLocked(epoch int32, base int64) bool {
	if epoch < 0 {
		return false
	}
	if n := len(p.epochs); n > 0 && p.epochs[n-1].Epoch >= epoch {
		return false
	}
	p.epochs = append(p.epochs, tier2.EpochStart{Epoch: epoch, Start: base})
	p.epochsDirty = true
	return true
}

// cutEpochsLocked forgets epochs starting at or above offset.
func (p *partition) cutEpochsLocked(offset int64) {
	for len(p.epochs) > 0 && p.epochs[len(p.epochs)-1].Start >= offset {
		p.epochs = p.epochs[:len(p.epochs)-1]
		p.epochsDirty = true
	}
}

// lastEpoch is the newest epoch in the log, or -1.
func (p *partition) lastEpoch() int32 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if len(p.epochs) == 0 {
		return -1
	}
	return p.epochs[len(p.epochs)-1].Epoch
}

// epochEnd answers OffsetForLeaderEpoch for epoch: the largest cached epoch
// at or below it and the offset after its last record.
func (p *partition) epochEnd(epoch int32) (int32, int64) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if !p.repl.on {
		if epoch < 0 {
			return -1, -1
		}
		return 0, p.hw
	}
	i := len(p.epochs) - 1
	for i >= 0 && p.epochs[i].Epoch > epoch {
		i--
	}
	switch {
	case i < 0:
		return -1, -1
	case i == len(p.epochs)-1:
		return p.epochs[i].Epoch, p.hw
	}
	return p.epochs[i].Epoch, p.epochs[i+1].Start
}

// saveEpochs checkpoints the cache if it changed since the last save.
func (p *partition) saveEpochs() error {
	p.mu.Lock()
	if !p.epochsDirty {
		p.mu.Unlock()
		return nil
	}
	es := append([]tier2.EpochStart(nil), p.epochs...)
	p.epochsDirty = false
	p.mu.Unlock()
	if err := tier2.WriteLeaderEpochs(p.topic.fs, p.dir, es); err != nil {
		p.mu.Lock()
		p.epochsDirty = true
		p.mu.Unlock()
		return err
	}
	return nil
}

func batchLeaderEpoch(b []byte) int32 { return int32(binary.BigEndian.Uint32(b[offLeaderEpoch:])) }
