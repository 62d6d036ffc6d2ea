package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/chronik-go/chronik/broker"
	"github.com/chronik-go/chronik/tier3"
)

func newTopicRestoreCmd() *cobra.Command {
	var dataDir, tier3URL string
	cmd := &cobra.Command{
		Use:   "restore TOPIC [--data-dir DIR] [--tier3-url URL]",
		Short: "Rebuild a topic from its Tier 3 bucket (disaster recovery)",
		Long: `Rebuild an archived topic into a broker data directory from the object
store, with its ID, partitions and configs. Run it with the broker stopped,
on a data directory that lacks the topic (an empty cluster), then start the
broker: every archived record is served from the bucket, and new records
continue after them. Only archived data comes back.

--data-dir and --tier3-url default to CHRONIK_DATA_DIR and CHRONIK_TIER3_URL
(then ./data and file://<data-dir>/archive), as for chronik start; the
store's credentials come from the same environment variables.`,
		Example: `  CHRONIK_TIER3_URL=minio://minio:9000/chronik AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
    chronik topic restore orders --data-dir /var/lib/chronik`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dataDir == "" {
				dataDir = os.Getenv("CHRONIK_DATA_DIR")
			}
			if dataDir == "" {
				dataDir = "./data"
			}
			if tier3URL == "" {
				tier3URL = os.Getenv("CHRONIK_TIER3_URL")
			}
			if tier3URL == "" {
				abs, err := filepath.Abs(filepath.Join(dataDir, "archive"))
				if err != nil {
					return err
				}
				tier3URL = (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String()
			}
			ctx := cmd.Context()
			store, err := tier3.Open(ctx, tier3URL)
			if err != nil {
				return fmt.Errorf("--tier3-url %q: %w", tier3URL, err)
			}
			parts, err := broker.RestoreTopic(ctx, dataDir, store, args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, p := range parts {
				fmt.Fprintf(out, "partition %d: offsets %d to %d from %d archived segments\n", p.Partition, p.LogStart, p.End, p.Segments)
			}
			fmt.Fprintf(out, "restored topic %q with %d partitions into %s; start the broker to serve it\n", args[0], len(parts), dataDir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "broker data directory to restore into (default: CHRONIK_DATA_DIR, else ./data)")
	cmd.Flags().StringVar(&tier3URL, "tier3-url", "", "object store holding the archive (default: CHRONIK_TIER3_URL, else file://<data-dir>/archive)")
	return cmd
}
