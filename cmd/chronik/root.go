package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/chronik-go/chronik/ops"
)

// run executes the command line and returns the exit status. Everything the
// commands touch outside the process comes in as an argument, so tests run
// them in-process.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env ops.Env) int {
	root := newRootCmd(env)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(withEnv(ctx, env)); err != nil {
		fmt.Fprintf(stderr, "chronik: %v\n", err)
		return 1
	}
	return 0
}

func newRootCmd(env ops.Env) *cobra.Command {
	root := &cobra.Command{
		Use:   "chronik",
		Short: "Kafka-compatible streaming with tiered storage",
		Long: `Chronik is a Kafka-wire-compatible streaming platform. Run a broker with
"chronik start"; produce, consume, manage topics and benchmark with the
other commands, or with any Kafka client.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see %s --help)", err, c.CommandPath())
	})
	root.AddCommand(
		newStartCmd(env),
		newProduceCmd(),
		newConsumeCmd(),
		newTopicCmd(),
		newGroupCmd(),
		newTxnCmd(),
		newBenchCmd(),
		newSearchCmd(env),
		newClusterCmd(),
		newHealthCmd(env),
		newIndexBuildCmd(),
		newCertsCmd(),
		newUserCmd(),
		newACLCmd(),
	)
	return root
}

type envKey struct{}

// withEnv makes env reachable from the commands' contexts: the client
// commands read CHRONIK_SASL_PASSWORD from it, and tests pass their own.
func withEnv(ctx context.Context, env ops.Env) context.Context {
	return context.WithValue(ctx, envKey{}, env)
}

// envFrom returns the environment run was given; an empty one when the
// context did not come from run.
func envFrom(ctx context.Context) ops.Env {
	if env, ok := ctx.Value(envKey{}).(ops.Env); ok && env != nil {
		return env
	}
	return func(string) string { return "" }
}
