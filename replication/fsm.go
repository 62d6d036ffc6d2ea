package replication

import (
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// fsm applies the metadata log to a State. Readers get immutable snapshots
// through current; waiters learn of every apply through applied.
type fsm struct {
	state atomic.Pointer[State]

	mu      sync.Mutex    // guards applied
	applied chan struct{} // closed and replaced on every apply

	changed chan struct{} // capacity 1: nudges the one subscriber
}

func newFSM() *fsm {
	f := &fsm{applied: make(chan struct{}), changed: make(chan struct{}, 1)}
	f.state.Store(NewState())
	return f
}

func (f *fsm) current() *State { return f.state.Load() }

func (f *fsm) publish(s *State) {
	f.state.Store(s)
	f.mu.Lock()
	close(f.applied)
	f.applied = make(chan struct{})
	f.mu.Unlock()
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// appliedCh returns a channel closed at the next apply.
func (f *fsm) appliedCh() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	s := f.current()
	if l.Type != raft.LogCommand {
		return nil
	}
	var res Result
	n := s
	if c, err := decodeCommand(l.Data); err != nil {
		res.Err = errorf(CodeInvalidRequest, "%v", err)
	} else {
		n, res = applyAt(s, c, l.Index)
	}
	if n == s {
		n = s.clone()
	}
	n.Index = l.Index
	res.Index = l.Index
	f.publish(n)
	return res
}

// Snapshot implements raft.FSM; the state is immutable, so persisting it
// later is safe.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &snapshot{s: f.current()}, nil
}

// Restore implements raft.FSM.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	s, err := unmarshalState(b)
	if err != nil {
		return err
	}
	f.publish(s)
	return nil
}

type snapshot struct{ s *State }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	b, err := s.s.Marshal()
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
