package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/security"
)

// connFlags are the connection flags every client command shares.
type connFlags struct {
	brokers []string
	timeout time.Duration
	sec     securityFlags // TLS and SASL (client_security.go)
	// command is the name of the command the flags belong to: what an
	// authorization error says the command needed.
	command string
}

func (f *connFlags) register(fs *pflag.FlagSet) {
	fs.StringSliceVarP(&f.brokers, "brokers", "b", []string{"127.0.0.1:9092"}, "bootstrap brokers, host:port, comma-separated")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "give up on a broker request (and on delivering a record) after this long")
	f.sec.register(fs)
	f.command = fs.Name() // cobra names a command's flag set after the command
}

func (f *connFlags) validate() error {
	if len(f.brokers) == 0 {
		return errors.New("--brokers is empty: give at least one host:port, e.g. --brokers 127.0.0.1:9092")
	}
	for _, b := range f.brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("--brokers %q is not host:port: write e.g. 127.0.0.1:9092", b)
		}
	}
	if f.timeout < time.Second {
		return fmt.Errorf("--timeout %v is below 1s: franz-go needs at least a second to deliver a record", f.timeout)
	}
	return nil
}

func (f *connFlags) where() string { return strings.Join(f.brokers, ",") }

// connect returns a client that has reached a broker: kgo dials lazily and
// retries forever, so without this check an unreachable broker shows up as a
// hang instead of an error.
func (f *connFlags) connect(ctx context.Context, opts ...kgo.Opt) (*kgo.Client, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	secOpts, err := f.securityOpts(ctx)
	if err != nil {
		return nil, err
	}
	opts = append(append([]kgo.Opt{
		kgo.SeedBrokers(f.brokers...),
		kgo.DialTimeout(min(f.timeout, 10*time.Second)),
		kgo.RetryTimeout(f.timeout),
	}, secOpts...), opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	if err := cl.Ping(pctx); err != nil {
		cl.Close()
		return nil, f.explain(err, "")
	}
	return cl, nil
}

// securityOpts are the TLS and SASL options of the security flags (and
// CHRONIK_SASL_PASSWORD from the command's environment), for a client made
// without connect.
func (f *connFlags) securityOpts(ctx context.Context) ([]kgo.Opt, error) {
	sec, err := f.sec.resolve(envFrom(ctx))
	if err != nil {
		return nil, err
	}
	return sec.opts()
}

// explain turns a client error into one that names the problem and the fix.
// topic, if set, is the topic the failed operation was about.
func (f *connFlags) explain(err error, topic string) error {
	if err == nil {
		return nil
	}
	if e := f.explainSecurity(err, topic); e != nil {
		return e
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot reach broker at %s: is `chronik start` running? (%w)", f.where(), err)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("cannot resolve broker host %q: check --brokers (%w)", dnsErr.Name, err)
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return fmt.Errorf("cannot reach broker at %s: is `chronik start` running and the address reachable? (%w)", f.where(), err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer from broker at %s within --timeout %v: is `chronik start` running? (%w)", f.where(), f.timeout, err)
	case errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID):
		if topic == "" {
			return err
		}
		return fmt.Errorf("topic %q does not exist: create it with `chronik topic create %s` (%w)", topic, topic, err)
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		return fmt.Errorf("a record batch is larger than the topic's max.message.bytes: send smaller records, or raise the limit with `chronik topic alter %s --config max.message.bytes=N` (%w)", topic, err)
	case errors.Is(err, kerr.NotEnoughReplicas), errors.Is(err, kerr.NotEnoughReplicasAfterAppend):
		return fmt.Errorf("fewer in-sync replicas than the topic's min.insync.replicas: bring brokers back or use a weaker --acks (%w)", err)
	case errors.Is(err, kgo.ErrRecordTimeout):
		return fmt.Errorf("records were not delivered within --timeout %v: the broker at %s is unreachable or overloaded (%w)", f.timeout, f.where(), err)
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return fmt.Errorf("broker refused: %s: %s", ke.Message, ke.Description)
	}
	return err
}

// explainSecurity names the problem and the fix for TLS, SASL and
// authorization errors; nil for any other error. topic, if set, is the
// topic the failed operation was about.
func (f *connFlags) explainSecurity(err error, topic string) error {
	sec := f.sec.resolved
	proto := security.Plaintext
	if sec != nil {
		proto = sec.protocol
	}
	var (
		firstEOF  *kgo.ErrFirstReadEOF
		recordErr tls.RecordHeaderError
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		alert     tls.AlertError
		remote    *net.OpError // a TLS alert from the broker, e.g. "certificate required"
	)
	// kgo reports a connection closed at once, before any answer, as
	// ErrFirstReadEOF: what a listener of another protocol does. A later
	// EOF (a broker restarting) is not a protocol problem.
	closed := errors.As(err, &firstEOF)
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		user, mech := "", defaultSASLMechanism
		if sec != nil {
			user, mech = sec.username.value, sec.mechanism.value
		}
		return fmt.Errorf("authentication failed for user %q at %s: check --sasl-username and the password; the user may not exist or have no %s credential (an admin sees them with `chronik user list`) (%w)",
			user, f.where(), mech, err)
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		mech := ""
		if sec != nil {
			mech = sec.mechanism.value
		}
		return fmt.Errorf("the listener at %s does not offer SASL mechanism %s: choose another with --sasl-mechanism (the broker's CHRONIK_SASL_ENABLED_MECHANISMS lists them) (%w)", f.where(), mech, err)
	case errors.Is(err, kerr.IllegalSaslState):
		return fmt.Errorf("the listener at %s does not use SASL: connect with --security-protocol PLAINTEXT or SSL, or to the broker's SASL listener (%w)", f.where(), err)
	case errors.As(err, &unknownCA):
		return fmt.Errorf("the certificate of the broker at %s is not signed by a CA this client trusts: give the CA's PEM file with --tls-ca-file (ssl.ca.location) (%w)", f.where(), err)
	case errors.As(err, &hostErr):
		return fmt.Errorf("the certificate of the broker at %s is not for the host dialled: put a name or address of its certificate in --brokers, or skip the name check with ssl.endpoint.identification.algorithm= in the --command-config file (%w)", f.where(), err)
	case errors.As(err, &invalid):
		return fmt.Errorf("the certificate of the broker at %s is not valid now (expired, or not for serving?): renew it on the broker (%w)", f.where(), err)
	case errors.As(err, &alert), errors.As(err, &remote) && remote.Op == "remote error":
		return fmt.Errorf("the broker at %s refused the TLS handshake: if it requires a client certificate (CHRONIK_TLS_CLIENT_AUTH), give --tls-cert-file and --tls-key-file signed by a CA it trusts (%w)", f.where(), err)
	case proto.TLS() && (closed || errors.As(err, &recordErr)):
		return fmt.Errorf("the listener at %s does not seem to speak TLS: it may need --security-protocol %s (%w)", f.where(), plainCounterpart(proto), err)
	case !proto.TLS() && (closed || strings.Contains(err.Error(), "tls alert record")):
		if proto.SASL() {
			return fmt.Errorf("the broker at %s closed the connection: the listener may need --security-protocol SASL_SSL (with --tls-ca-file) (%w)", f.where(), err)
		}
		return fmt.Errorf("the broker at %s closed the connection: the listener may need --security-protocol SSL, SASL_PLAINTEXT or SASL_SSL (SASL with --sasl-username) (%w)", f.where(), err)
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		return f.denied(err, commandOperation(f.command, kmsg.ACLResourceTypeTopic), kmsg.ACLResourceTypeTopic, topic)
	case errors.Is(err, kerr.GroupAuthorizationFailed):
		return f.denied(err, commandOperation(f.command, kmsg.ACLResourceTypeGroup), kmsg.ACLResourceTypeGroup, "")
	case errors.Is(err, kerr.ClusterAuthorizationFailed):
		return f.denied(err, commandOperation(f.command, kmsg.ACLResourceTypeCluster), kmsg.ACLResourceTypeCluster, "")
	case errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		return f.denied(err, commandOperation(f.command, kmsg.ACLResourceTypeTransactionalId), kmsg.ACLResourceTypeTransactionalId, "")
	}
	return nil
}

func plainCounterpart(p security.Protocol) security.Protocol {
	if p == security.SaslSSL {
		return security.SaslPlaintext
	}
	return security.Plaintext
}

// commandOperation is the ACL operation a command needs on a resource
// type, for the advice of an authorization error. The commands that share
// connFlags say nothing about what they do, so it goes by the command's
// name (cobra names a command's flag set after it).
func commandOperation(command string, rt kmsg.ACLResourceType) kmsg.ACLOperation {
	switch command {
	case "produce":
		if rt == kmsg.ACLResourceTypeCluster {
			return kmsg.ACLOperationIdempotentWrite
		}
		return kmsg.ACLOperationWrite
	case "consume":
		if rt == kmsg.ACLResourceTypeCluster {
			return kmsg.ACLOperationDescribe
		}
		return kmsg.ACLOperationRead
	case "create":
		return kmsg.ACLOperationCreate
	case "delete":
		return kmsg.ACLOperationDelete
	case "alter":
		return kmsg.ACLOperationAlterConfigs
	case "reset-offsets":
		if rt == kmsg.ACLResourceTypeGroup {
			return kmsg.ACLOperationRead
		}
	case "reassign":
		if rt == kmsg.ACLResourceTypeCluster {
			return kmsg.ACLOperationAlter
		}
	}
	return kmsg.ACLOperationDescribe
}

// denied explains an authorization failure: who may not do what, and the
// command an admin runs to allow it. name may be empty when unknown.
func (f *connFlags) denied(err error, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) error {
	principal := f.sec.resolved.principal()
	what, flag := resourcePhrase(rt, name)
	return fmt.Errorf("%s may not %s %s: an admin (a CHRONIK_SUPER_USERS principal) can allow it with `chronik acl add --allow-principal %s --operation %s %s` (%w)",
		principal, op, what, principal, operationFlag(op), flag, err)
}

// admin returns an admin client on a connected client; closing the admin
// client closes cl.
func (f *connFlags) admin(ctx context.Context) (*kadm.Client, error) {
	cl, err := f.connect(ctx)
	if err != nil {
		return nil, err
	}
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(int32(f.timeout.Milliseconds()))
	return adm, nil
}

// topicPartitions returns the topic's partition count, or an error saying
// it does not exist.
func (f *connFlags) topicPartitions(ctx context.Context, adm *kadm.Client, topic string) (int, error) {
	tds, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, f.explain(err, topic)
	}
	td, ok := tds[topic]
	if !ok {
		return 0, f.explain(kerr.UnknownTopicOrPartition, topic)
	}
	if td.Err != nil {
		return 0, f.explain(td.Err, topic)
	}
	return len(td.Partitions), nil
}

func parseAcks(s string) (kgo.Acks, error) {
	switch s {
	case "all", "-1":
		return kgo.AllISRAcks(), nil
	case "1":
		return kgo.LeaderAck(), nil
	case "0":
		return kgo.NoAck(), nil
	}
	return kgo.Acks{}, fmt.Errorf("--acks %q is not one of all, 1, 0", s)
}

func parseCompression(s string) (kgo.CompressionCodec, error) {
	switch s {
	case "none", "":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("--compression %q is not one of none, gzip, snappy, lz4, zstd", s)
}

// parseKVs parses repeated k=v flags, keeping order.
func parseKVs(flag string, kvs []string) ([][2]string, error) {
	out := make([][2]string, 0, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q is not key=value", flag, kv)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

func requireTopic(topic string) error {
	if topic == "" {
		return errors.New("--topic is required")
	}
	return nil
}
