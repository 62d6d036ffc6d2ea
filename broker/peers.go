package broker

import (
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// peerClients are this broker's clients of the other brokers' inter-broker
// listeners (transaction markers, their verification, waiting for a new
// topic to reach every broker), one per address.
type peerClients struct {
	b       *Broker
	mu      sync.Mutex
	clients map[string]*kgo.Client // by address; bounded by the brokers
}

func (pc *peerClients) client(addr string) (*kgo.Client, error) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if cl := pc.clients[addr]; cl != nil {
		return cl, nil
	}
	cl, err := kgo.NewClient(append(pc.b.interBrokerOpts(), kgo.SeedBrokers(addr), kgo.DialTimeout(2*time.Second), kgo.RequestRetries(0))...)
	if err != nil {
		return nil, err
	}
	if pc.clients == nil {
		pc.clients = map[string]*kgo.Client{}
	}
	if len(pc.clients) >= 1024 { // brokers come and go: never keep more than a cluster's worth
		for a, c := range pc.clients {
			c.Close()
			delete(pc.clients, a)
		}
	}
	pc.clients[addr] = cl
	return cl, nil
}

func (pc *peerClients) close() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for a, c := range pc.clients {
		c.Close()
		delete(pc.clients, a)
	}
}
