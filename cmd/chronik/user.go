package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/term"

	"github.com/chronik-go/chronik/security"
)

// SCRAM users, through DescribeUserScramCredentials and
// AlterUserScramCredentials (Kafka's kafka-configs --entity-type users).
// Passwords are salted here: only the salted password travels.

// defaultScramIterations is Kafka's usual count for new credentials (and
// the bootstrap users').
const defaultScramIterations = 8192

func newUserCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Create, list and delete SCRAM users",
		Long: `Manage the SCRAM users clients authenticate as on SASL listeners (SCRAM-SHA-256,
SCRAM-SHA-512, and PLAIN, which is checked against the same credentials).
Changing users needs ALTER on the cluster, listing them DESCRIBE; the first
admin comes from CHRONIK_BOOTSTRAP_USERS_FILE and CHRONIK_SUPER_USERS.`,
	}
	cmd.AddCommand(newUserCreateCmd(), newUserListCmd(), newUserDeleteCmd())
	return cmd
}

func newUserCreateCmd() *cobra.Command {
	var (
		conn         connFlags
		mechanisms   []string
		iterations   int32
		passwordFile string
	)
	cmd := &cobra.Command{
		Use:   "create NAME [--mechanism SCRAM-SHA-512] [--iterations 8192] [--password-file FILE]",
		Short: "Create a SCRAM user, or change its password",
		Long: `Create a SCRAM user, or set a new password for an existing one.

The password is the first line of --password-file, else of standard input;
on a terminal it is asked for twice, without echo. It never goes on the
command line, where ps and the shell history would show it.`,
		Example: `  chronik user create alice --password-file alice.pw
  printf '%s\n' "$ALICE_PASSWORD" | chronik user create alice --mechanism SCRAM-SHA-256
  chronik user create alice --sasl-username admin --sasl-password-file admin.pw   # then type the password`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			mechs, err := parseScramMechanisms(mechanisms)
			if err != nil {
				return err
			}
			if iterations < security.MinScramIterations || iterations > security.MaxScramIterations {
				return fmt.Errorf("--iterations %d is outside %d to %d, the range Kafka accepts", iterations, security.MinScramIterations, security.MaxScramIterations)
			}
			password, err := newUserPassword(cmd.InOrStdin(), cmd.ErrOrStderr(), name, passwordFile)
			if err != nil {
				return err
			}
			upserts := make([]kadm.UpsertSCRAM, 0, len(mechs))
			for _, m := range mechs {
				salt := make([]byte, 32)
				rand.Read(salt) // never fails (crypto/rand, Go 1.24+)
				salted, err := security.SaltPassword(m, password, salt, iterations)
				if err != nil {
					return err
				}
				code, _ := security.MechanismCode(m)
				upserts = append(upserts, kadm.UpsertSCRAM{User: name, Mechanism: kadm.ScramMechanism(code), Iterations: iterations, Salt: salt, SaltedPassword: salted})
			}
			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			return alterUsers(ctx, &conn, adm, nil, upserts, func(u string) {
				fmt.Fprintf(cmd.OutOrStdout(), "set the %s %s of user %q (%d iterations)\n", strings.Join(mechs, " and "), plural(len(mechs), "credential"), u, iterations)
			})
		},
	}
	conn.register(cmd.Flags())
	cmd.Flags().StringSliceVar(&mechanisms, "mechanism", []string{security.MechanismScramSHA512}, "SCRAM-SHA-512 or SCRAM-SHA-256 (repeat or comma-separate for both)")
	cmd.Flags().Int32Var(&iterations, "iterations", defaultScramIterations, fmt.Sprintf("PBKDF2 iterations, %d to %d", security.MinScramIterations, security.MaxScramIterations))
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "file whose first line is the new password (default: standard input)")
	return cmd
}

func newUserListCmd() *cobra.Command {
	var conn connFlags
	cmd := &cobra.Command{
		Use:   "list [NAME...]",
		Short: "List SCRAM users with their mechanisms and iteration counts",
		RunE: func(cmd *cobra.Command, names []string) error {
			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			described, err := describeUsers(ctx, &conn, adm, names)
			if err != nil {
				return err
			}
			var errs []error
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tMECHANISM\tITERATIONS")
			for _, d := range described.Sorted() {
				if d.Err != nil {
					errs = append(errs, userError(d.User, d.Err, d.ErrMessage))
					continue
				}
				infos := slices.Clone(d.CredInfos)
				slices.SortFunc(infos, func(a, b kadm.CredInfo) int { return int(a.Mechanism) - int(b.Mechanism) })
				for _, ci := range infos {
					fmt.Fprintf(tw, "%s\t%s\t%d\n", d.User, ci.Mechanism, ci.Iterations)
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return errors.Join(errs...)
		},
	}
	conn.register(cmd.Flags())
	return cmd
}

func newUserDeleteCmd() *cobra.Command {
	var (
		conn       connFlags
		mechanisms []string
	)
	cmd := &cobra.Command{
		Use:   "delete NAME... [--mechanism SCRAM-SHA-512]",
		Short: "Delete SCRAM users (every credential they have, or one mechanism's)",
		Long: `Delete SCRAM users: every credential of each user, or only those of --mechanism.
Connections the user already authenticated stay open; new ones fail. ACLs
naming the user are kept: remove them with chronik acl remove --principal User:NAME.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, names []string) error {
			ctx := cmd.Context()
			var mechs []string
			if len(mechanisms) > 0 {
				var err error
				if mechs, err = parseScramMechanisms(mechanisms); err != nil {
					return err
				}
			}
			// Connect only after the flags are known good.
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			var dels []kadm.DeleteSCRAM
			deleted := map[string][]string{}
			if len(mechs) == 0 {
				described, err := describeUsers(ctx, &conn, adm, names)
				if err != nil {
					return err
				}
				var errs []error
				for _, d := range described.Sorted() {
					if d.Err != nil {
						errs = append(errs, userError(d.User, d.Err, d.ErrMessage))
						continue
					}
					for _, ci := range d.CredInfos {
						dels = append(dels, kadm.DeleteSCRAM{User: d.User, Mechanism: ci.Mechanism})
						deleted[d.User] = append(deleted[d.User], ci.Mechanism.String())
					}
				}
				if len(errs) > 0 {
					return errors.Join(errs...)
				}
			} else {
				for _, n := range names {
					for _, m := range mechs {
						code, _ := security.MechanismCode(m)
						dels = append(dels, kadm.DeleteSCRAM{User: n, Mechanism: kadm.ScramMechanism(code)})
						deleted[n] = append(deleted[n], m)
					}
				}
			}
			return alterUsers(ctx, &conn, adm, dels, nil, func(u string) {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted the %s %s of user %q\n", strings.Join(deleted[u], " and "), plural(len(deleted[u]), "credential"), u)
			})
		},
	}
	conn.register(cmd.Flags())
	cmd.Flags().StringSliceVar(&mechanisms, "mechanism", nil, "delete only this mechanism's credential: SCRAM-SHA-512 or SCRAM-SHA-256 (default: every one the user has)")
	return cmd
}

// parseScramMechanisms checks --mechanism values, in any case, and drops
// repeats.
func parseScramMechanisms(values []string) ([]string, error) {
	if len(values) == 0 {
		return nil, errors.New("--mechanism is empty: give SCRAM-SHA-512 or SCRAM-SHA-256")
	}
	var out []string
	for _, v := range values {
		m := strings.ToUpper(strings.TrimSpace(v))
		switch m {
		case security.MechanismScramSHA256, security.MechanismScramSHA512:
		case security.MechanismPlain:
			return nil, errors.New("--mechanism PLAIN: users are stored as SCRAM credentials and PLAIN logins are checked against them: use SCRAM-SHA-512 (the default) or SCRAM-SHA-256")
		default:
			return nil, fmt.Errorf("--mechanism %q is not SCRAM-SHA-512 or SCRAM-SHA-256", v)
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out, nil
}

// newUserPassword reads the new user's password from file, else from in:
// asked twice without echo on a terminal, else its first line.
func newUserPassword(in io.Reader, prompt io.Writer, user, file string) (string, error) {
	if file != "" {
		pw, err := readPasswordFile(file)
		if err != nil {
			return "", fmt.Errorf("--password-file: %w", err)
		}
		return pw, nil
	}
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(prompt, "Password for user %s: ", user)
		first, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		fmt.Fprintf(prompt, "Again: ")
		again, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		if string(first) != string(again) {
			return "", errors.New("the two passwords differ: nothing was changed, run the command again")
		}
		if len(first) == 0 {
			return "", errors.New("the password is empty: give one")
		}
		return string(first), nil
	}
	line, err := bufio.NewReader(io.LimitReader(in, 64<<10)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("no password on standard input: pipe it in (its first line is used) or give --password-file FILE")
	}
	return line, nil
}

// describeUsers runs DescribeUserScramCredentials, explaining a refusal.
func describeUsers(ctx context.Context, conn *connFlags, adm *kadm.Client, names []string) (kadm.DescribedUserSCRAMs, error) {
	described, err := adm.DescribeUserSCRAMs(ctx, names...)
	if err != nil {
		if errors.Is(err, kerr.ClusterAuthorizationFailed) {
			return nil, conn.denied(err, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeCluster, "")
		}
		return nil, conn.explain(err, "")
	}
	return described, nil
}

// alterUsers runs AlterUserScramCredentials, calling ok for each user
// changed and returning an error for each user that was not.
func alterUsers(ctx context.Context, conn *connFlags, adm *kadm.Client, dels []kadm.DeleteSCRAM, upserts []kadm.UpsertSCRAM, ok func(user string)) error {
	altered, err := adm.AlterUserSCRAMs(ctx, dels, upserts)
	if err != nil {
		if errors.Is(err, kerr.ClusterAuthorizationFailed) {
			return conn.denied(err, kmsg.ACLOperationAlter, kmsg.ACLResourceTypeCluster, "")
		}
		return conn.explain(err, "")
	}
	var errs []error
	for _, a := range altered.Sorted() {
		if a.Err != nil {
			errs = append(errs, userError(a.User, a.Err, a.ErrMessage))
			continue
		}
		ok(a.User)
	}
	return errors.Join(errs...)
}

// userError names the user, the Kafka error and the fix.
func userError(user string, err error, msg string) error {
	name := err.Error()
	var ke *kerr.Error
	if errors.As(err, &ke) {
		name = ke.Message
	}
	if msg != "" {
		name += ": " + msg
	}
	fix := ""
	switch {
	case errors.Is(err, kerr.ResourceNotFound):
		fix = "`chronik user list` shows the users and their mechanisms"
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		fix = "use --mechanism SCRAM-SHA-512 or SCRAM-SHA-256"
	case errors.Is(err, kerr.UnacceptableCredential):
		fix = fmt.Sprintf("give a non-empty name and --iterations %d to %d", security.MinScramIterations, security.MaxScramIterations)
	case errors.Is(err, kerr.DuplicateResource):
		fix = "name each user and mechanism once"
	case errors.Is(err, kerr.ClusterAuthorizationFailed):
		fix = "an admin (a CHRONIK_SUPER_USERS principal) can allow it with `chronik acl add --allow-principal User:NAME --operation alter --cluster`"
	}
	if fix == "" {
		return fmt.Errorf("user %q: %s", user, name)
	}
	return fmt.Errorf("user %q: %s: %s", user, name, fix)
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
