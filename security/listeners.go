package security

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// Protocol is a Kafka security protocol: what a listener speaks under
// the Kafka protocol.
type Protocol string

const (
	Plaintext     Protocol = "PLAINTEXT"
	SSL           Protocol = "SSL"
	SaslPlaintext Protocol = "SASL_PLAINTEXT"
	SaslSSL       Protocol = "SASL_SSL"
)

var protocols = []Protocol{Plaintext, SSL, SaslPlaintext, SaslSSL}

// TLS reports whether connections are wrapped in TLS.
func (p Protocol) TLS() bool { return p == SSL || p == SaslSSL }

// SASL reports whether clients must authenticate with SASL.
func (p Protocol) SASL() bool { return p == SaslPlaintext || p == SaslSSL }

// parseProtocol is case-insensitive, as Kafka's SecurityProtocol.forName.
func parseProtocol(s string) (Protocol, bool) {
	p := Protocol(strings.ToUpper(s))
	return p, slices.Contains(protocols, p)
}

// Listener is one Kafka listener, in Kafka's form NAME://host:port.
type Listener struct {
	Name     string // upper-case, e.g. "PLAINTEXT", "INTERNAL", "CLIENT"
	Protocol Protocol
	Host     string // may be empty: all interfaces
	Port     int
}

// Addr is the address to listen on.
func (l Listener) Addr() string { return net.JoinHostPort(l.Host, strconv.Itoa(l.Port)) }

// String is the listener as Kafka writes it, IPv6 hosts in brackets.
func (l Listener) String() string { return l.Name + "://" + l.Addr() }

// ParseListeners parses Kafka's listeners syntax:
// "PLAINTEXT://:9092,SASL_SSL://0.0.0.0:9094,INTERNAL://chronik-1:9095".
//
// protocolMap is Kafka's listener.security.protocol.map
// ("INTERNAL:SSL,CLIENT:SASL_SSL"). A listener whose name is itself a
// protocol name needs no entry; an entry for it wins, as in Kafka.
// Names and protocols are case-insensitive and returned upper-case (Kafka
// normalises listener names the same way). Port 0 asks for a free port.
//
// Two listeners may not share a port on the same host, where an empty
// host, 0.0.0.0 and :: stand for every host: the second bind would fail.
// Hosts are compared as written, so localhost and 127.0.0.1 on one port
// pass here and fail at bind time.
func ParseListeners(spec, protocolMap string) ([]Listener, error) {
	pmap, err := parseProtocolMap(protocolMap)
	if err != nil {
		return nil, err
	}
	var out []Listener
	for _, entry := range splitList(spec) {
		name, host, port, err := parseEndpoint("listeners", entry)
		if err != nil {
			return nil, err
		}
		proto, ok := pmap[name]
		if !ok {
			if proto, ok = parseProtocol(name); !ok {
				return nil, fmt.Errorf("security: listeners entry %q: %s is not a security protocol (%s) and listener.security.protocol.map has no entry for it: add %s:SSL (or another protocol) to the map",
					entry, name, protocolList(), name)
			}
		}
		l := Listener{Name: name, Protocol: proto, Host: host, Port: port}
		for _, prev := range out {
			if prev.Name == l.Name {
				return nil, fmt.Errorf("security: listeners entries %q and %q have the same name %s: give each listener its own name", prev, l, l.Name)
			}
			if l.Port != 0 && prev.Port == l.Port && sameBindHost(prev.Host, l.Host) {
				return nil, fmt.Errorf("security: listeners entries %q and %q both bind port %d: give each listener its own port", prev, l, l.Port)
			}
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("security: listeners %q names no listener: give at least one, e.g. PLAINTEXT://:9092", spec)
	}
	return out, nil
}

// ParseAdvertised parses Kafka's advertised.listeners
// ("PLAINTEXT://broker1.example.com:9092,SASL_SSL://broker1.example.com:9094")
// against the listeners and returns listener name → host:port. Each name
// must be a listener's, and each address one a client can dial. A
// listener left out is not advertised here; an empty spec returns an
// empty map and the caller decides what "unset" means.
func ParseAdvertised(spec string, listeners []Listener) (map[string]string, error) {
	out := make(map[string]string)
	for _, entry := range splitList(spec) {
		name, host, port, err := parseEndpoint("advertised.listeners", entry)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(listeners, func(l Listener) bool { return l.Name == name }) {
			names := make([]string, len(listeners))
			for i, l := range listeners {
				names[i] = l.Name
			}
			return nil, fmt.Errorf("security: advertised.listeners entry %q: %s is not a listener (have %s): advertise only names from listeners",
				entry, name, strings.Join(names, ", "))
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("security: advertised.listeners names %s twice: give one address per listener", name)
		}
		if port == 0 {
			return nil, fmt.Errorf("security: advertised.listeners entry %q: port 0 cannot be dialled: give the port clients connect to", entry)
		}
		if isWildcard(host) {
			return nil, fmt.Errorf("security: advertised.listeners entry %q: clients cannot dial host %q: give the host name or IP they reach this broker at, e.g. %s://broker1.example.com:%d",
				entry, host, name, port)
		}
		out[name] = net.JoinHostPort(host, strconv.Itoa(port))
	}
	return out, nil
}

// parseEndpoint splits NAME://host:port; setting names the config for
// messages.
func parseEndpoint(setting, entry string) (name, host string, port int, err error) {
	name, addr, ok := strings.Cut(entry, "://")
	if !ok {
		return "", "", 0, fmt.Errorf("security: %s entry %q has no \"://\": write NAME://host:port, e.g. PLAINTEXT://:9092", setting, entry)
	}
	if !validName(name) {
		return "", "", 0, fmt.Errorf("security: %s entry %q: listener name %q must be letters, digits, '_' or '-', e.g. PLAINTEXT or INTERNAL", setting, entry, name)
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", 0, fmt.Errorf("security: %s entry %q: %q is not host:port (IPv6 hosts go in brackets, e.g. SSL://[::1]:9093)", setting, entry, addr)
	}
	port, err = strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", "", 0, fmt.Errorf("security: %s entry %q: port %q is not in 0..65535", setting, entry, portStr)
	}
	return strings.ToUpper(name), host, port, nil
}

// parseProtocolMap parses "NAME:PROTOCOL,..." into upper-case names.
func parseProtocolMap(s string) (map[string]Protocol, error) {
	m := make(map[string]Protocol)
	for _, entry := range splitList(s) {
		name, proto, ok := strings.Cut(entry, ":")
		name, proto = strings.TrimSpace(name), strings.TrimSpace(proto)
		if !ok || !validName(name) {
			return nil, fmt.Errorf("security: listener.security.protocol.map entry %q is not NAME:PROTOCOL, e.g. INTERNAL:SSL", entry)
		}
		p, ok := parseProtocol(proto)
		if !ok {
			return nil, fmt.Errorf("security: listener.security.protocol.map entry %q: %q is not one of %s", entry, proto, protocolList())
		}
		name = strings.ToUpper(name)
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("security: listener.security.protocol.map names %s twice: keep one entry", name)
		}
		m[name] = p
	}
	return m, nil
}

// splitList splits a comma-separated list, dropping blanks as Kafka's
// parseCsvList does, so a trailing comma is harmless.
func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func isWildcard(host string) bool { return host == "" || host == "0.0.0.0" || host == "::" }

// sameBindHost reports whether binding both hosts on one port conflicts.
func sameBindHost(a, b string) bool {
	return isWildcard(a) || isWildcard(b) || strings.EqualFold(a, b)
}

func protocolList() string {
	s := make([]string, len(protocols))
	for i, p := range protocols {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}
