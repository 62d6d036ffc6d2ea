package indexer

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/analysis"
	"github.com/blevesearch/bleve/v2/analysis/analyzer/keyword"
	"github.com/blevesearch/bleve/v2/analysis/analyzer/standard"
	"github.com/blevesearch/bleve/v2/document"
	"github.com/blevesearch/bleve/v2/mapping"
	index "github.com/blevesearch/bleve_index_api"
)

// Record is one Kafka record as the indexer and the search engine see it.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp int64  // unix milliseconds
	Key       []byte // nil when the record has none
	Headers   []Header
	Value     []byte // nil for a tombstone
}

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// The record fields every document has (DESIGN.md, "Search contract").
// A JSON value's top-level member with one of these names is indexed
// under value.<name> instead, so the record field keeps its meaning.
const (
	fieldTopic     = "topic"
	fieldPartition = "partition"
	fieldOffset    = "offset"
	fieldTimestamp = "timestamp"
	fieldKey       = "key"      // the whole key, one term (keyword)
	fieldKeyText   = "key.text" // the key's words
	fieldHeaders   = "headers"
	fieldValue     = "value"
	fieldAll       = "_all" // the bare-term field: every text field
)

var reserved = map[string]bool{
	fieldTopic: true, fieldPartition: true, fieldOffset: true, fieldTimestamp: true,
	fieldKey: true, fieldHeaders: true, fieldValue: true, fieldAll: true, "_id": true,
}

// mappingVersion is recorded with every uploaded index; a search engine
// rebuilds (on the fly) an index of another version instead of reading it.
const mappingVersion = 2

// NewMapping returns the index mapping Chronik's documents are queried
// with. Documents are built by Document, field by field, so the mapping
// only tells the query parser which analyzer a field uses: key and topic
// are keywords, every other string field is analyzed by the standard
// analyzer (Unicode words, lower-cased, English stop words dropped).
func NewMapping() *mapping.IndexMappingImpl {
	im := bleve.NewIndexMapping()
	im.DefaultAnalyzer = standard.Name
	im.StoreDynamic = false
	im.DocValuesDynamic = false
	kw := bleve.NewKeywordFieldMapping()
	kw.Store = false
	kw.IncludeInAll = false
	for _, f := range []string{fieldKey, fieldTopic, fieldPartition} {
		im.DefaultMapping.AddFieldMappingsAt(f, kw)
	}
	return im
}

var (
	textOpts    = index.IndexField | index.IncludeTermVectors
	keywordOpts = index.IndexField
	sortOpts    = index.IndexField | index.DocValues
	typedOpts   = index.IndexField
)

// analyzers are the two analyzers documents use, resolved once.
type analyzers struct {
	text, keyword analysis.Analyzer
}

func newAnalyzers(im *mapping.IndexMappingImpl) analyzers {
	return analyzers{text: im.AnalyzerNamed(standard.Name), keyword: im.AnalyzerNamed(keyword.Name)}
}

// DocID names a record's document: topic/partition/offset. Kafka topic
// names cannot hold a slash.
func DocID(topic string, partition int32, offset int64) string {
	return topic + "/" + strconv.Itoa(int(partition)) + "/" + strconv.FormatInt(offset, 10)
}

// ParseDocID is DocID's inverse.
func ParseDocID(id string) (topic string, partition int32, offset int64, ok bool) {
	i := strings.LastIndexByte(id, '/')
	if i <= 0 {
		return "", 0, 0, false
	}
	j := strings.LastIndexByte(id[:i], '/')
	if j <= 0 {
		return "", 0, 0, false
	}
	p, err1 := strconv.ParseInt(id[j+1:i], 10, 32)
	o, err2 := strconv.ParseInt(id[i+1:], 10, 64)
	if err1 != nil || err2 != nil {
		return "", 0, 0, false
	}
	return id[:j], int32(p), o, true
}

// docBuilder turns records into Bleve documents. Not safe for concurrent
// use.
type docBuilder struct {
	an      analyzers
	exclude []string // fields of the current document kept out of _all
}

func newDocBuilder() *docBuilder { return &docBuilder{an: newAnalyzers(NewMapping())} }

// Document builds r's document. Nothing is stored: the index holds the
// record's coordinates (in the ID and the sortable fields) and its
// searchable terms, and a hit's record is read back from its tier.
func (b *docBuilder) Document(r *Record) *document.Document {
	d := document.NewDocument(DocID(r.Topic, r.Partition, r.Offset))
	b.exclude = append(b.exclude[:0], fieldTopic, fieldPartition, fieldOffset, fieldTimestamp, fieldKey)
	d.AddField(document.NewTextFieldCustom(fieldTopic, nil, []byte(r.Topic), keywordOpts, b.an.keyword))
	// The partition is one word: a segment index holds one partition, so
	// numeric terms and doc values would cost much for nothing; the query
	// string's `partition:1` matches the word (ranges do not).
	d.AddField(document.NewTextFieldCustom(fieldPartition, nil, []byte(strconv.Itoa(int(r.Partition))), keywordOpts, b.an.keyword))
	d.AddField(document.NewNumericFieldWithIndexingOptions(fieldOffset, nil, float64(r.Offset), sortOpts))
	if ts, err := document.NewDateTimeFieldWithIndexingOptions(fieldTimestamp, nil, time.UnixMilli(r.Timestamp), time.RFC3339Nano, sortOpts); err == nil {
		d.AddField(ts)
	}
	if r.Key != nil {
		k := validUTF8(r.Key)
		d.AddField(document.NewTextFieldCustom(fieldKey, nil, k, keywordOpts, b.an.keyword))
		d.AddField(document.NewTextFieldCustom(fieldKeyText, nil, k, textOpts, b.an.text))
	}
	for _, h := range r.Headers {
		d.AddField(document.NewTextFieldCustom(fieldHeaders+"."+h.Key, nil, validUTF8(h.Value), textOpts, b.an.text))
	}
	if len(r.Value) > 0 {
		var obj map[string]any
		if r.Value[0] == '{' && json.Unmarshal(r.Value, &obj) == nil {
			for k, v := range obj {
				name := k
				if reserved[k] {
					name = fieldValue + "." + k
				}
				b.addJSON(d, name, nil, v)
			}
		} else {
			d.AddField(document.NewTextFieldCustom(fieldValue, nil, validUTF8(r.Value), textOpts, b.an.text))
		}
	}
	d.AddField(document.NewCompositeFieldWithIndexingOptions(fieldAll, true, nil, b.exclude, textOpts))
	return d
}

// addJSON indexes one JSON member under its dotted path: strings as text
// (or as dates when they are RFC3339 timestamps), numbers as numbers,
// booleans as booleans and as the words true and false, arrays element
// by element.
func (b *docBuilder) addJSON(d *document.Document, path string, ap []uint64, v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			b.addJSON(d, path+"."+k, ap, c)
		}
	case []any:
		for i, c := range v {
			b.addJSON(d, path, append(ap[:len(ap):len(ap)], uint64(i)), c)
		}
	case string:
		if t, ok := parseRFC3339(v); ok {
			if f, err := document.NewDateTimeFieldWithIndexingOptions(path, ap, t, time.RFC3339Nano, typedOpts); err == nil {
				d.AddField(f)
				b.exclude = append(b.exclude, path)
				return
			}
		}
		d.AddField(document.NewTextFieldCustom(path, ap, []byte(v), textOpts, b.an.text))
	case float64:
		d.AddField(document.NewNumericFieldWithIndexingOptions(path, ap, v, typedOpts))
		b.exclude = append(b.exclude, path)
	case bool:
		d.AddField(document.NewBooleanFieldWithIndexingOptions(path, ap, v, typedOpts))
		// The query string syntax has no boolean term: `paid:true` is a
		// match query, so the word is indexed too.
		d.AddField(document.NewTextFieldCustom(path, ap, []byte(strconv.FormatBool(v)), keywordOpts, b.an.keyword))
	}
}

// parseRFC3339 accepts RFC 3339 timestamps (with or without fractional
// seconds) and nothing else: a plain date or a number stays text.
func parseRFC3339(s string) (time.Time, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") || len(s) > 40 || s[4] != '-' || (s[10] != 'T' && s[10] != 't') {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

func validUTF8(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	return []byte(strings.ToValidUTF8(string(b), "\uFFFD"))
}
