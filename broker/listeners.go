package broker

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/replication"
	"github.com/chronik-go/chronik/security"
)

// A broker serves Kafka on one or more listeners (Kafka's listeners), each
// with its security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
// A client is told, in Metadata and FindCoordinator, the endpoints of the
// listener it connected to, so clients of a TLS listener stay on TLS.
// Other brokers dial the inter-broker listener (replica fetches, repairs),
// with this broker's certificate when it is SSL: mutual TLS.

// listener is one bound Kafka listener.
type listener struct {
	security.Listener
	ln net.Listener
	// host and port are what its clients are told (advertise), fixed
	// once it is bound.
	host string
	port int32
}

// defaultListener is the listener name of CHRONIK_KAFKA_ADDR.
const defaultListener = "PLAINTEXT"

// listenerSpecs returns the configured listeners, or one PLAINTEXT
// listener on KafkaAddr.
func (b *Broker) listenerSpecs() ([]security.Listener, error) {
	if len(b.cfg.Listeners) > 0 {
		return b.cfg.Listeners, nil
	}
	host, port, err := net.SplitHostPort(b.cfg.KafkaAddr)
	if err != nil {
		return nil, fmt.Errorf("broker: kafka address %q is not host:port", b.cfg.KafkaAddr)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("broker: kafka address %q has no numeric port", b.cfg.KafkaAddr)
	}
	return []security.Listener{{Name: defaultListener, Protocol: security.Plaintext, Host: host, Port: n}}, nil
}

// interBrokerListener is the name of the listener other brokers dial.
func (b *Broker) interBrokerListener() string {
	if b.cfg.InterBrokerListener != "" {
		return b.cfg.InterBrokerListener
	}
	if len(b.cfg.Listeners) > 0 {
		return b.cfg.Listeners[0].Name
	}
	return defaultListener
}

// interBrokerOpts are the client options for dialing another broker's
// inter-broker listener: TLS with this broker's certificate when the
// listener is SSL.
func (b *Broker) interBrokerOpts() []kgo.Opt {
	name := b.interBrokerListener()
	for _, l := range b.cfg.Listeners {
		if l.Name == name && l.Protocol.TLS() && b.cfg.ClientTLS != nil {
			return []kgo.Opt{kgo.DialTLSConfig(b.cfg.ClientTLS.Clone())}
		}
	}
	return nil
}

// listenerNamed returns the bound listener called name, or nil.
func (b *Broker) listenerNamed(name string) *listener {
	b.lnMu.Lock()
	defer b.lnMu.Unlock()
	for _, l := range b.lns {
		if l.Name == name {
			return l
		}
	}
	return nil
}

// advertise sets what the clients of l, just bound, are told: its
// advertised listener, else (the first listener) AdvertisedAddr, else the
// bound address with the machine's host name for a wildcard host.
func (b *Broker) advertise(l *listener, first bool) {
	addr := b.cfg.AdvertisedListeners[l.Name]
	if addr == "" && first {
		addr = b.cfg.AdvertisedAddr
	}
	if addr == "" {
		addr = l.ln.Addr().String()
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		l.host, l.port = addr, 9092
		return
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	p, _ := strconv.Atoi(port)
	l.host, l.port = host, int32(p)
}

// endpoints returns the advertised host:port of every listener, by name,
// for the broker's registration.
func (b *Broker) endpoints() map[string]string {
	b.lnMu.Lock()
	lns := b.lns
	b.lnMu.Unlock()
	out := make(map[string]string, len(lns))
	for _, l := range lns {
		out[l.Name] = net.JoinHostPort(l.host, strconv.Itoa(int(l.port)))
	}
	return out
}

// endpoint returns where the clients of listener name reach broker bi:
// its endpoint of that listener, or its first listener's.
func endpoint(bi *replication.BrokerInfo, name string) (string, int32) {
	if addr, ok := bi.Endpoints[name]; ok {
		if h, p, err := net.SplitHostPort(addr); err == nil {
			if n, err := strconv.Atoi(p); err == nil {
				return h, int32(n)
			}
		}
	}
	return bi.Host, bi.Port
}
