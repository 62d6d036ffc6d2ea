package main

import (
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/chronik-go/chronik/indexer"
)

// indexBuildGC is the build child's GOGC: its heap is mostly Bleve's
// short-lived garbage, and collecting it half as often saves CPU for a
// heap that stays small (a segment's documents are flushed to disk every
// few thousand records), bounded by indexBuildMemLimit.
const (
	indexBuildGC       = 200
	indexBuildMemLimit = 1 << 30
)

// newIndexBuildCmd is the batch indexer's build process: a broker runs
// the same binary as `chronik index-build --nice N DIR` for each archived
// segment (indexer.Config.BuildCommand) and feeds it the segment's record
// batches on stdin. Not for people, hence hidden.
func newIndexBuildCmd() *cobra.Command {
	var nice int
	cmd := &cobra.Command{
		Use:    "index-build DIR",
		Short:  "Build one segment's search index (run by the broker)",
		Args:   cobra.ExactArgs(1),
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			debug.SetGCPercent(indexBuildGC)
			debug.SetMemoryLimit(indexBuildMemLimit)
			return indexer.BuildChild(cmd.Context(), nice, args[0], cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().IntVar(&nice, "nice", 19, "nice value (0-19) of every thread of this process")
	return cmd
}
