package broker

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// replicaAddrRefresh is how often, at most, a registered internal host is
// resolved again because a fetch claiming its broker came from an address
// it did not resolve to (a broker that moved, a DNS change).
const replicaAddrRefresh = 5 * time.Second

// replicaAddrs caches the IPs the brokers' registered internal hosts resolve
// to, so a follower's fetch (Config.ReplicaFetchRequireInternalAddr) is
// checked without a lookup on the fetch path.
type replicaAddrs struct {
	// lookup resolves a host name; nil means the system resolver. Tests
	// replace it.
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)

	mu    sync.Mutex // guards hosts
	hosts map[string]resolvedHost
}

type resolvedHost struct {
	addrs []netip.Addr // unmapped
	at    time.Time    // when resolved (or last failed to)
}

// matches reports whether a connection from ip may speak for a broker
// registered at host. Host names are resolved, the answer cached and
// looked up again on a mismatch at most every replicaAddrRefresh; a lookup
// that fails keeps the previous answer. A loopback ip matches a host that
// resolves to a loopback address: such a peer is on this machine, and
// Linux sends from 127.0.0.1 to every 127/8 address (a host name that
// resolves to 127.0.1.1, as Debian's do, would otherwise never match).
func (r *replicaAddrs) matches(host string, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return addrMatches([]netip.Addr{a.Unmap()}, ip)
	}
	r.mu.Lock()
	h, ok := r.hosts[host]
	r.mu.Unlock()
	if ok && (addrMatches(h.addrs, ip) || time.Since(h.at) < replicaAddrRefresh) {
		return addrMatches(h.addrs, ip)
	}
	lookup := r.lookup
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	addrs, err := lookup(ctx, host)
	cancel()
	if err == nil {
		h.addrs = make([]netip.Addr, 0, len(addrs))
		for _, a := range addrs {
			h.addrs = append(h.addrs, a.Unmap())
		}
	}
	h.at = time.Now()
	r.mu.Lock()
	if r.hosts == nil {
		r.hosts = make(map[string]resolvedHost)
	}
	r.hosts[host] = h
	r.mu.Unlock()
	return addrMatches(h.addrs, ip)
}

func addrMatches(addrs []netip.Addr, ip netip.Addr) bool {
	if slices.Contains(addrs, ip) {
		return true
	}
	return ip.IsLoopback() && slices.ContainsFunc(addrs, netip.Addr.IsLoopback)
}
