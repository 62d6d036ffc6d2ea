package indexer

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/index/scorch"
)

// builder is an index being built: on disk by scorch's offline builder
// (one merged segment, the form uploaded and cached), or in memory for a
// range of the log that changes (the local tail).
type builder interface {
	add(r *Record) error
	// finish completes the index and opens it for search.
	finish() (bleve.Index, error)
	abort()
}

// diskBuilder writes a read-only index directory at dir: index_meta.json
// and the scorch store, its segments merged into one.
type diskBuilder struct {
	dir  string
	b    *scorch.Builder
	docs *docBuilder
	n    int
}

// builderBatch is scorch's offline builder batch size (newDiskBuilder).
const builderBatch = 2000

// metaJSON is what bleve.Open expects in index_meta.json.
const metaJSON = `{"storage":"scorch","index_type":"scorch"}`

func newDiskBuilder(dir string) (*diskBuilder, error) {
	if err := os.MkdirAll(filepath.Join(dir, "store"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "index_meta.json"), []byte(metaJSON), 0o644); err != nil {
		return nil, err
	}
	m, err := json.Marshal(NewMapping())
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, "build")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	b, err := scorch.NewBuilder(map[string]any{
		"path":            filepath.Join(dir, "store"),
		"buildPathPrefix": tmp,
		// Documents wait in memory, analysed, until a batch is written
		// as an interim segment. Measured on a 140,000-record segment:
		// 2,000 peaks at 230 MiB resident and builds as fast as 500 or
		// 1,000 (175 MiB); 5,000 took 495 MiB and 20,000 1 GiB, no faster
		// for the fewer segments merged at close (docs/benchmarks.md).
		"batchSize": builderBatch,
		"internal":  map[string][]byte{"_mapping": m},
	})
	if err != nil {
		return nil, fmt.Errorf("indexer: start index build: %w", err)
	}
	return &diskBuilder{dir: dir, b: b, docs: newDocBuilder()}, nil
}

func (d *diskBuilder) add(r *Record) error {
	d.n++
	return d.b.Index(d.docs.Document(r))
}

// close merges the built segments into the final store.
func (d *diskBuilder) close() error {
	if d.n == 0 {
		// scorch's builder cannot finish without a document.
		if err := os.RemoveAll(d.dir); err != nil {
			return err
		}
		idx, err := bleve.New(d.dir, NewMapping())
		if err != nil {
			return fmt.Errorf("indexer: create empty index: %w", err)
		}
		return idx.Close()
	}
	if err := d.b.Close(); err != nil {
		return fmt.Errorf("indexer: finish index build: %w", err)
	}
	return os.RemoveAll(filepath.Join(d.dir, "build"))
}

func (d *diskBuilder) finish() (bleve.Index, error) {
	if err := d.close(); err != nil {
		return nil, err
	}
	return openDir(d.dir)
}

func (d *diskBuilder) abort() {
	// The builder's temporary segments are under dir.
	_ = os.RemoveAll(d.dir)
}

// openDir opens a finished index directory for search only.
func openDir(dir string) (bleve.Index, error) {
	idx, err := bleve.OpenUsing(dir, map[string]any{"read_only": true})
	if err != nil {
		return nil, fmt.Errorf("indexer: open index %s: %w", filepath.Base(dir), err)
	}
	return idx, nil
}

// memBuilder builds an in-memory index.
type memBuilder struct {
	idx   bleve.Index
	batch *bleve.Batch
	docs  *docBuilder
	// flushAt is the batch size written at once (0: 5000). A batch is
	// analysed and indexed in one Bleve call no context stops.
	flushAt int
}

// searchFlushAt bounds what a search's build of a tail index does past
// the search's context: one batch, a fraction of a second of CPU.
const searchFlushAt = 1000

func newMemBuilder() (*memBuilder, error) {
	idx, err := bleve.NewMemOnly(NewMapping())
	if err != nil {
		return nil, err
	}
	return &memBuilder{idx: idx, batch: idx.NewBatch(), docs: newDocBuilder(), flushAt: searchFlushAt}, nil
}

func (m *memBuilder) add(r *Record) error {
	if err := m.batch.IndexAdvanced(m.docs.Document(r)); err != nil {
		return err
	}
	if m.batch.Size() >= cmp.Or(m.flushAt, 5000) {
		if err := m.idx.Batch(m.batch); err != nil {
			return err
		}
		m.batch.Reset()
	}
	return nil
}

func (m *memBuilder) finish() (bleve.Index, error) {
	if m.batch.Size() > 0 {
		if err := m.idx.Batch(m.batch); err != nil {
			m.abort()
			return nil, err
		}
	}
	return m.idx, nil
}

func (m *memBuilder) abort() { _ = m.idx.Close() }
