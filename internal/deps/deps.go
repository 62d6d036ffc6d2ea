// Package deps pins the modules that the Raft controller (replication/) and
// the batch indexer (indexer/) are being built on, so parallel work on both
// starts from one go.mod. It goes away once both packages import them.
package deps

import (
	_ "github.com/blevesearch/bleve/v2"
	_ "github.com/hashicorp/raft"
	_ "github.com/hashicorp/raft-boltdb/v2"
)
