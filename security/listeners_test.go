package security

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseListeners(t *testing.T) {
	for _, tc := range []struct {
		name        string
		spec, pmap  string
		want        []Listener
		wantStrings []string
		wantErr     string // substring; empty means success
	}{
		{
			name: "kafka example",
			spec: "PLAINTEXT://:9092,SASL_SSL://0.0.0.0:9094,INTERNAL://chronik-1:9095",
			pmap: "INTERNAL:SSL,CLIENT:SASL_SSL",
			want: []Listener{
				{Name: "PLAINTEXT", Protocol: Plaintext, Port: 9092},
				{Name: "SASL_SSL", Protocol: SaslSSL, Host: "0.0.0.0", Port: 9094},
				{Name: "INTERNAL", Protocol: SSL, Host: "chronik-1", Port: 9095},
			},
			wantStrings: []string{"PLAINTEXT://:9092", "SASL_SSL://0.0.0.0:9094", "INTERNAL://chronik-1:9095"},
		},
		{
			name:        "bracketed IPv6",
			spec:        "SSL://[::1]:9093",
			want:        []Listener{{Name: "SSL", Protocol: SSL, Host: "::1", Port: 9093}},
			wantStrings: []string{"SSL://[::1]:9093"},
		},
		{
			name: "lower case and blanks are normalised",
			spec: " plaintext://localhost:9092 , client://:9094,",
			pmap: "client:sasl_plaintext",
			want: []Listener{
				{Name: "PLAINTEXT", Protocol: Plaintext, Host: "localhost", Port: 9092},
				{Name: "CLIENT", Protocol: SaslPlaintext, Port: 9094},
			},
		},
		{
			name: "a map entry wins over the name",
			spec: "PLAINTEXT://:9092",
			pmap: "PLAINTEXT:SSL",
			want: []Listener{{Name: "PLAINTEXT", Protocol: SSL, Port: 9092}},
		},
		{
			name: "port 0 may repeat",
			spec: "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
			want: []Listener{
				{Name: "PLAINTEXT", Protocol: Plaintext, Host: "127.0.0.1", Port: 0},
				{Name: "SSL", Protocol: SSL, Host: "127.0.0.1", Port: 0},
			},
		},
		{
			name: "one port on two hosts",
			spec: "PLAINTEXT://127.0.0.1:9092,SSL://10.0.0.5:9092",
			want: []Listener{
				{Name: "PLAINTEXT", Protocol: Plaintext, Host: "127.0.0.1", Port: 9092},
				{Name: "SSL", Protocol: SSL, Host: "10.0.0.5", Port: 9092},
			},
		},
		{name: "empty", spec: " , ", wantErr: "names no listener"},
		{name: "no scheme separator", spec: "PLAINTEXT:9092", wantErr: `"PLAINTEXT:9092" has no "://"`},
		{name: "single slash", spec: "PLAINTEXT:/:9092", wantErr: `has no "://"`},
		{name: "empty name", spec: "://:9092", wantErr: `listener name "" must be`},
		{name: "bad name", spec: "PLAIN TEXT://:9092", wantErr: `listener name "PLAIN TEXT" must be`},
		{name: "unknown scheme", spec: "INTERNAL://:9095", wantErr: "listener.security.protocol.map has no entry for it: add INTERNAL:SSL"},
		{name: "unknown scheme with other map", spec: "INTERNAL://:9095", pmap: "CLIENT:SSL", wantErr: "no entry for it"},
		{name: "duplicate name", spec: "PLAINTEXT://:9092,plaintext://:9093", wantErr: "have the same name PLAINTEXT"},
		{name: "duplicate port same host", spec: "PLAINTEXT://h1:9092,SSL://H1:9092", wantErr: "both bind port 9092"},
		{name: "duplicate port wildcard", spec: "PLAINTEXT://:9092,SSL://127.0.0.1:9092", wantErr: "both bind port 9092"},
		{name: "duplicate port 0.0.0.0", spec: "PLAINTEXT://10.0.0.5:9092,SSL://0.0.0.0:9092", wantErr: "both bind port 9092"},
		{name: "duplicate port ::", spec: "PLAINTEXT://[::]:9092,SSL://10.0.0.5:9092", wantErr: "both bind port 9092"},
		{name: "port too big", spec: "PLAINTEXT://:65536", wantErr: `port "65536" is not in 0..65535`},
		{name: "negative port", spec: "PLAINTEXT://:-1", wantErr: `port "-1" is not in 0..65535`},
		{name: "port not a number", spec: "PLAINTEXT://:kafka", wantErr: `port "kafka" is not in 0..65535`},
		{name: "no port", spec: "PLAINTEXT://localhost", wantErr: `"localhost" is not host:port`},
		{name: "unbracketed IPv6", spec: "SSL://::1:9093", wantErr: "IPv6 hosts go in brackets"},
		{name: "map entry without colon", spec: "PLAINTEXT://:9092", pmap: "INTERNAL", wantErr: `protocol.map entry "INTERNAL" is not NAME:PROTOCOL`},
		{name: "map entry empty name", spec: "PLAINTEXT://:9092", pmap: ":SSL", wantErr: `entry ":SSL" is not NAME:PROTOCOL`},
		{name: "map unknown protocol", spec: "PLAINTEXT://:9092", pmap: "INTERNAL:TLS", wantErr: `"TLS" is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL`},
		{name: "map duplicate", spec: "PLAINTEXT://:9092", pmap: "INTERNAL:SSL,internal:SASL_SSL", wantErr: "names INTERNAL twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseListeners(tc.spec, tc.pmap)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "security: ") {
					t.Fatalf("ParseListeners(%q, %q) = %v, %v; want error containing %q", tc.spec, tc.pmap, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseListeners(%q, %q): %v", tc.spec, tc.pmap, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseListeners(%q, %q) (-want +got):\n%s", tc.spec, tc.pmap, diff)
			}
			if tc.wantStrings != nil {
				var strs []string
				for _, l := range got {
					strs = append(strs, l.String())
				}
				if diff := cmp.Diff(tc.wantStrings, strs); diff != "" {
					t.Errorf("String() (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestListenerAddr(t *testing.T) {
	for _, tc := range []struct {
		l    Listener
		want string
	}{
		{Listener{Port: 9092}, ":9092"},
		{Listener{Host: "0.0.0.0", Port: 9092}, "0.0.0.0:9092"},
		{Listener{Host: "::1", Port: 9093}, "[::1]:9093"},
	} {
		if got := tc.l.Addr(); got != tc.want {
			t.Errorf("%+v.Addr() = %q, want %q", tc.l, got, tc.want)
		}
	}
}

func TestProtocolFlags(t *testing.T) {
	type flags struct{ TLS, SASL bool }
	got := map[Protocol]flags{}
	for _, p := range []Protocol{Plaintext, SSL, SaslPlaintext, SaslSSL} {
		got[p] = flags{p.TLS(), p.SASL()}
	}
	want := map[Protocol]flags{
		Plaintext:     {false, false},
		SSL:           {true, false},
		SaslPlaintext: {false, true},
		SaslSSL:       {true, true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseAdvertised(t *testing.T) {
	listeners, err := ParseListeners("PLAINTEXT://:9092,SASL_SSL://0.0.0.0:9094,INTERNAL://:9095", "INTERNAL:SSL")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, spec string
		want       map[string]string
		wantErr    string
	}{
		{
			name: "kafka example",
			spec: "PLAINTEXT://broker1.example.com:9092,SASL_SSL://broker1.example.com:9094",
			want: map[string]string{"PLAINTEXT": "broker1.example.com:9092", "SASL_SSL": "broker1.example.com:9094"},
		},
		{
			name: "IPv6 and lower-case name",
			spec: "internal://[fd00::5]:19095",
			want: map[string]string{"INTERNAL": "[fd00::5]:19095"},
		},
		{name: "empty", spec: "", want: map[string]string{}},
		{name: "not a listener", spec: "CLIENT://b1:9092", wantErr: "CLIENT is not a listener (have PLAINTEXT, SASL_SSL, INTERNAL)"},
		{name: "duplicate", spec: "PLAINTEXT://b1:9092,PLAINTEXT://b2:9092", wantErr: "names PLAINTEXT twice"},
		{name: "empty host", spec: "PLAINTEXT://:9092", wantErr: `clients cannot dial host ""`},
		{name: "IPv4 wildcard", spec: "PLAINTEXT://0.0.0.0:9092", wantErr: `clients cannot dial host "0.0.0.0"`},
		{name: "IPv6 wildcard", spec: "PLAINTEXT://[::]:9092", wantErr: `clients cannot dial host "::"`},
		{name: "port 0", spec: "PLAINTEXT://b1:0", wantErr: "port 0 cannot be dialled"},
		{name: "port too big", spec: "PLAINTEXT://b1:70000", wantErr: `port "70000" is not in 0..65535`},
		{name: "no scheme separator", spec: "PLAINTEXT:b1:9092", wantErr: `has no "://"`},
		{name: "no port", spec: "PLAINTEXT://b1", wantErr: "is not host:port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAdvertised(tc.spec, listeners)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "security: advertised.listeners") {
					t.Fatalf("ParseAdvertised(%q) = %v, %v; want error containing %q", tc.spec, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAdvertised(%q): %v", tc.spec, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseAdvertised(%q) (-want +got):\n%s", tc.spec, diff)
			}
		})
	}
}
