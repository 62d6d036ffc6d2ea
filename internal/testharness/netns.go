package testharness

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Hosts is a set of network namespaces, one per broker, each with its own
// address, wired to each other and to the test's namespace by point-to-point
// veth links (no bridge, no forwarding, so the host's firewall — Docker's
// FORWARD policy among others — never sees the traffic). Cut takes every
// link of one host down: a real network partition, with the process still
// running. Creating namespaces needs root and iproute2.
type Hosts struct {
	t      testing.TB
	prefix string // namespace and link name prefix, unique per test process
	subnet string // first three octets
	n      int
	links  map[[2]int]string // (a, b) with a < b, 0 the test's namespace → veth name
}

// NewHosts creates n hosts; they are removed when the test ends.
func NewHosts(t testing.TB, n int) *Hosts {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("testharness: network namespaces need root (run the cluster fault tests as root, as CI does)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("testharness: the ip command (Debian's iproute2) is needed for network namespaces: %v", err)
	}
	pid := os.Getpid()
	h := &Hosts{t: t, prefix: fmt.Sprintf("c%d", pid%100000), subnet: fmt.Sprintf("10.213.%d", 20+pid%200), n: n, links: map[[2]int]string{}}
	t.Cleanup(h.remove)
	for i := 1; i <= n; i++ {
		h.ip("netns", "add", h.ns(i))
		h.ip("-n", h.ns(i), "link", "set", "lo", "up")
		h.ip("-n", h.ns(i), "addr", "add", h.IP(i)+"/32", "dev", "lo")
	}
	h.ip("addr", "add", h.IP(0)+"/32", "dev", "lo")
	// A link taken down takes its route with it, and the test's namespace
	// has a default route: without this, traffic for a host that is cut
	// off would leave the machine through it. The subnet is unreachable
	// here unless a host's own route says otherwise.
	h.ip("route", "replace", "unreachable", h.subnet+".0/24")
	for a := 0; a <= n; a++ {
		for b := a + 1; b <= n; b++ {
			va, vb := fmt.Sprintf("%sv%dx%d", h.prefix, a, b), fmt.Sprintf("%sv%dx%d", h.prefix, b, a)
			h.links[[2]int{a, b}] = va
			h.ip("link", "add", va, "type", "veth", "peer", "name", vb)
			h.ip("link", "set", vb, "netns", h.ns(b))
			h.ip("-n", h.ns(b), "link", "set", vb, "up")
			h.ip("-n", h.ns(b), "route", "add", h.IP(a)+"/32", "dev", vb, "src", h.IP(b))
			if a == 0 {
				h.ip("link", "set", va, "up")
				h.ip("route", "add", h.IP(b)+"/32", "dev", va, "src", h.IP(0))
			} else {
				h.ip("link", "set", va, "netns", h.ns(a))
				h.ip("-n", h.ns(a), "link", "set", va, "up")
				h.ip("-n", h.ns(a), "route", "add", h.IP(b)+"/32", "dev", va, "src", h.IP(a))
			}
		}
	}
	return h
}

func (h *Hosts) ns(i int) string { return fmt.Sprintf("%s-%d", h.prefix, i) }

// IP is host i's address (1-based); 0 is the test's own.
func (h *Hosts) IP(i int) string { return fmt.Sprintf("%s.%d", h.subnet, 10+i) }

// Cut isolates host i from every other host and from the test.
func (h *Hosts) Cut(i int) { h.setLinks(i, "down") }

// Heal reconnects host i.
func (h *Hosts) Heal(i int) { h.setLinks(i, "up") }

func (h *Hosts) setLinks(i int, state string) {
	h.t.Helper()
	for k, name := range h.links {
		if k[0] != i && k[1] != i {
			continue
		}
		// Either end takes the pair down; the a end lives in the test's
		// namespace for links to it, else in host a's.
		if k[0] == 0 {
			h.ip("link", "set", name, state)
			other := fmt.Sprintf("%sv%dx%d", h.prefix, k[1], k[0])
			h.ip("-n", h.ns(k[1]), "link", "set", other, state)
		} else {
			h.ip("-n", h.ns(k[0]), "link", "set", name, state)
			other := fmt.Sprintf("%sv%dx%d", h.prefix, k[1], k[0])
			h.ip("-n", h.ns(k[1]), "link", "set", other, state)
		}
	}
	if state == "up" {
		// Routes over a link that went down are gone; add them back.
		for k, name := range h.links {
			if k[0] != i && k[1] != i {
				continue
			}
			a, b := k[0], k[1]
			other := fmt.Sprintf("%sv%dx%d", h.prefix, b, a)
			h.ipOK("-n", h.ns(b), "route", "replace", h.IP(a)+"/32", "dev", other, "src", h.IP(b))
			if a == 0 {
				h.ipOK("route", "replace", h.IP(b)+"/32", "dev", name, "src", h.IP(0))
			} else {
				h.ipOK("-n", h.ns(a), "route", "replace", h.IP(b)+"/32", "dev", name, "src", h.IP(a))
			}
		}
	}
}

// Command returns cmd run inside host i's namespace.
func (h *Hosts) Command(i int, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.ns(i), name}, args...)...)
}

func (h *Hosts) remove() {
	for k, name := range h.links {
		if k[0] == 0 {
			exec.Command("ip", "link", "del", name).Run()
		}
	}
	for i := 1; i <= h.n; i++ {
		exec.Command("ip", "netns", "del", h.ns(i)).Run()
	}
	exec.Command("ip", "addr", "del", h.IP(0)+"/32", "dev", "lo").Run()
	exec.Command("ip", "route", "del", "unreachable", h.subnet+".0/24").Run()
}

func (h *Hosts) ip(args ...string) {
	h.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		h.t.Fatalf("testharness: ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func (h *Hosts) ipOK(args ...string) { exec.Command("ip", args...).Run() }
