package security

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/xdg-go/scram"
)

// saslTestStore is a user store for session tests: user → mechanism →
// credential, made from passwords.
type saslTestStore map[string]map[string]ScramCredential

func (s saslTestStore) lookup(user, mechanism string) (ScramCredential, bool) {
	c, ok := s[user][mechanism]
	return c, ok
}

func (s saslTestStore) add(t testing.TB, user, password string, mechanisms ...string) {
	t.Helper()
	for _, m := range mechanisms {
		cred, err := NewScramCredential(m, password, MinScramIterations)
		if err != nil {
			t.Fatal(err)
		}
		if s[user] == nil {
			s[user] = map[string]ScramCredential{}
		}
		s[user][m] = cred
	}
}

func newSASLTestStore(t testing.TB) saslTestStore {
	s := saslTestStore{}
	s.add(t, "alice", "alice-secret", MechanismScramSHA256, MechanismScramSHA512)
	s.add(t, "bob", "bob-secret", MechanismScramSHA256) // no SHA-512
	s.add(t, "carol", "carol-secret", MechanismScramSHA512)
	s.add(t, "a,b=c", "odd-secret", MechanismScramSHA256, MechanismScramSHA512)
	return s
}

// saslTestScramExchange runs a whole exchange between xdg-go/scram's client
// and a server Session, and checks the server's signature the way a client
// does. It returns the session and the server's error, if any.
func saslTestScramExchange(t *testing.T, creds Credentials, mech, user, password, authzID string) (Session, error) {
	t.Helper()
	gen := scram.SHA256
	if mech == MechanismScramSHA512 {
		gen = scram.SHA512
	}
	client, err := gen.NewClient(user, password, authzID)
	if err != nil {
		t.Fatal(err)
	}
	conv := client.NewConversation()
	sess, err := NewSession(mech, creds)
	if err != nil {
		t.Fatal(err)
	}
	c1, err := conv.Step("")
	if err != nil {
		t.Fatal(err)
	}
	s1, done, err := sess.Step([]byte(c1))
	if err != nil {
		return sess, err
	}
	if done {
		t.Fatal("done after client-first")
	}
	c2, err := conv.Step(string(s1))
	if err != nil {
		t.Fatalf("client refused server-first %q: %v", s1, err)
	}
	s2, done, err := sess.Step([]byte(c2))
	if err != nil {
		if done {
			t.Error("done with an error")
		}
		return sess, err
	}
	if !done {
		t.Fatal("not done after client-final")
	}
	if _, err := conv.Step(string(s2)); err != nil || !conv.Valid() {
		t.Fatalf("client refused server-final %q: %v", s2, err)
	}
	return sess, nil
}

func TestScramSession(t *testing.T) {
	store := newSASLTestStore(t)
	for _, tc := range []struct {
		name, mech, user, password, authzID string
		wantPrincipal                       string // "" = must fail
	}{
		{"256 good", MechanismScramSHA256, "alice", "alice-secret", "", "User:alice"},
		{"512 good", MechanismScramSHA512, "alice", "alice-secret", "", "User:alice"},
		{"256 only user", MechanismScramSHA256, "bob", "bob-secret", "", "User:bob"},
		{"512 only user", MechanismScramSHA512, "carol", "carol-secret", "", "User:carol"},
		{"escaped name", MechanismScramSHA512, "a,b=c", "odd-secret", "", "User:a,b=c"},
		{"authzid equal to user", MechanismScramSHA256, "alice", "alice-secret", "alice", "User:alice"},
		{"256 wrong password", MechanismScramSHA256, "alice", "alice-secreT", "", ""},
		{"512 wrong password", MechanismScramSHA512, "alice", "", "", ""},
		{"256 unknown user", MechanismScramSHA256, "mallory", "alice-secret", "", ""},
		{"512 unknown user", MechanismScramSHA512, "mallory", "x", "", ""},
		{"no credential for mechanism", MechanismScramSHA512, "bob", "bob-secret", "", ""},
		{"user case matters", MechanismScramSHA512, "Alice", "alice-secret", "", ""},
		{"authzid of another user", MechanismScramSHA256, "alice", "alice-secret", "bob", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess, err := saslTestScramExchange(t, store.lookup, tc.mech, tc.user, tc.password, tc.authzID)
			if tc.wantPrincipal != "" {
				if err != nil {
					t.Fatalf("authentication failed: %v", err)
				}
				if got := sess.Principal(); got != tc.wantPrincipal {
					t.Errorf("Principal() = %q, want %q", got, tc.wantPrincipal)
				}
				return
			}
			if !errors.Is(err, ErrAuthenticationFailed) {
				t.Fatalf("err = %v, want ErrAuthenticationFailed", err)
			}
			// The same words for a wrong password and an unknown user.
			want := "Authentication failed during authentication due to invalid credentials with SASL mechanism " + tc.mech
			if err.Error() != want {
				t.Errorf("message %q, want %q", err.Error(), want)
			}
			if errors.Unwrap(err) == nil {
				t.Error("no cause for the server log")
			}
			if p := sess.Principal(); p != "" {
				t.Errorf("Principal() = %q after failure", p)
			}
			if _, _, err := sess.Step([]byte("n,,n=alice,r=abc")); !errors.Is(err, ErrAuthenticationFailed) {
				t.Errorf("Step after failure: err = %v", err)
			}
		})
	}
}

// An unknown user must look like a known one until the proof: same salt
// length and iterations, and a salt that does not change between attempts.
func TestScramUnknownUserServerFirst(t *testing.T) {
	store := newSASLTestStore(t)
	serverFirst := func(user string) (salt, iters string) {
		sess, err := NewSession(MechanismScramSHA512, store.lookup)
		if err != nil {
			t.Fatal(err)
		}
		reply, _, err := sess.Step([]byte("n,,n=" + user + ",r=clientnonce"))
		if err != nil {
			t.Fatalf("client-first for %q: %v", user, err)
		}
		fields := strings.Split(string(reply), ",")
		if len(fields) != 3 {
			t.Fatalf("server-first %q", reply)
		}
		return fields[1], fields[2]
	}
	knownSalt, knownIters := serverFirst("alice")
	salt1, iters1 := serverFirst("mallory")
	salt2, _ := serverFirst("mallory")
	other, _ := serverFirst("trudy")
	if len(salt1) != len(knownSalt) || iters1 != knownIters {
		t.Errorf("unknown user got %s,%s; a known user gets %s,%s", salt1, iters1, knownSalt, knownIters)
	}
	if salt1 != salt2 {
		t.Errorf("unknown user's salt changed: %s then %s", salt1, salt2)
	}
	if salt1 == other {
		t.Error("two unknown users got the same salt")
	}
}

func TestScramFromSaltedPasswordAuthenticates(t *testing.T) {
	for _, mech := range []string{MechanismScramSHA256, MechanismScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			salt := []byte("a salt chosen by the admin client")
			salted, err := SaltPassword(mech, "dave-secret", salt, 8192)
			if err != nil {
				t.Fatal(err)
			}
			cred, err := CredentialFromSaltedPassword(mech, salt, salted, 8192)
			if err != nil {
				t.Fatal(err)
			}
			store := saslTestStore{"dave": {mech: cred}}
			sess, err := saslTestScramExchange(t, store.lookup, mech, "dave", "dave-secret", "")
			if err != nil {
				t.Fatal(err)
			}
			if got := sess.Principal(); got != "User:dave" {
				t.Errorf("Principal() = %q", got)
			}
		})
	}
}

func TestScramSessionRejects(t *testing.T) {
	store := newSASLTestStore(t)
	for _, tc := range []struct {
		name     string
		first    string
		wantText string // in the client's message
	}{
		{"delegation token", "n,,n=alice,r=abc,tokenauth=true", "delegation tokens are not supported"},
		{"delegation token, other case", "n,,n=alice,r=abc,foo=bar,tokenauth=TRUE", "delegation tokens are not supported"},
		{"empty", "", "invalid credentials"},
		{"garbage", "hello", "invalid credentials"},
		{"bad escape", "n,,n=al=ice,r=abc", "invalid credentials"},
		{"channel binding", "p=tls-unique,,n=alice,r=abc", "invalid credentials"},
		{"extension m", "n,,m=x,n=alice,r=abc", "invalid credentials"},
		{"too big", "n,,n=alice,r=" + strings.Repeat("a", MaxSASLTokenSize), "invalid credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess, err := NewSession(MechanismScramSHA256, store.lookup)
			if err != nil {
				t.Fatal(err)
			}
			reply, done, err := sess.Step([]byte(tc.first))
			if !errors.Is(err, ErrAuthenticationFailed) || done || reply != nil {
				t.Fatalf("Step = %q, %v, %v; want an authentication failure", reply, done, err)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("message %q does not contain %q", err.Error(), tc.wantText)
			}
		})
	}

	t.Run("tokenauth=false is fine", func(t *testing.T) {
		sess, err := NewSession(MechanismScramSHA256, store.lookup)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := sess.Step([]byte("n,,n=alice,r=abc,tokenauth=false")); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("bad client-final", func(t *testing.T) {
		for _, final := range []string{"", "c=biws", "c=biws,r=wrong,p=AAAA", "c=biws,r=x,p=!!!"} {
			sess, err := NewSession(MechanismScramSHA256, store.lookup)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := sess.Step([]byte("n,,n=alice,r=abc")); err != nil {
				t.Fatal(err)
			}
			if _, done, err := sess.Step([]byte(final)); !errors.Is(err, ErrAuthenticationFailed) || done {
				t.Errorf("client-final %q: done %v, err %v", final, done, err)
			}
		}
	})

	t.Run("step after done", func(t *testing.T) {
		sess, err := saslTestScramExchange(t, store.lookup, MechanismScramSHA256, "alice", "alice-secret", "")
		if err != nil {
			t.Fatal(err)
		}
		if _, done, err := sess.Step([]byte("c=biws")); !errors.Is(err, ErrAuthenticationFailed) || done {
			t.Errorf("third Step: done %v, err %v", done, err)
		}
		if got := sess.Principal(); got != "User:alice" {
			t.Errorf("Principal() after a third Step = %q", got)
		}
	})
}

func TestPlainSession(t *testing.T) {
	store := newSASLTestStore(t)
	const (
		badCreds  = "Authentication failed: Invalid username or password"
		malformed = "Authentication failed: Invalid SASL/PLAIN request: expected authzid, username and password separated by NUL"
	)
	for _, tc := range []struct {
		name          string
		token         []byte
		wantPrincipal string
		wantMsg       string
	}{
		{"good", []byte("\x00alice\x00alice-secret"), "User:alice", ""},
		{"good, SHA-256 only", []byte("\x00bob\x00bob-secret"), "User:bob", ""},
		{"good, SHA-512 only", []byte("\x00carol\x00carol-secret"), "User:carol", ""},
		{"authzid equal to user", []byte("alice\x00alice\x00alice-secret"), "User:alice", ""},
		{"name with comma and equals", []byte("\x00a,b=c\x00odd-secret"), "User:a,b=c", ""},
		{"bad password", []byte("\x00alice\x00bob-secret"), "", badCreds},
		{"unknown user", []byte("\x00mallory\x00alice-secret"), "", badCreds},
		{"authzid mismatch", []byte("bob\x00alice\x00alice-secret"), "", "Authentication failed: Client requested an authorization id that is different from username"},
		{"no NULs", []byte("alice alice-secret"), "", malformed},
		{"one NUL", []byte("alice\x00alice-secret"), "", malformed},
		{"too many NULs", []byte("\x00alice\x00alice-secret\x00"), "", malformed},
		{"empty token", nil, "", malformed},
		{"empty user", []byte("\x00\x00alice-secret"), "", "Authentication failed: username not specified"},
		{"empty password", []byte("\x00alice\x00"), "", "Authentication failed: password not specified"},
		{"huge token", append([]byte("\x00alice\x00"), bytes.Repeat([]byte("x"), MaxSASLTokenSize)...), "", malformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess, err := NewSession(MechanismPlain, store.lookup)
			if err != nil {
				t.Fatal(err)
			}
			reply, done, err := sess.Step(tc.token)
			if tc.wantPrincipal != "" {
				if err != nil || !done || reply == nil || len(reply) != 0 {
					t.Fatalf("Step = %q, %v, %v; want an empty reply, done", reply, done, err)
				}
				if got := sess.Principal(); got != tc.wantPrincipal {
					t.Errorf("Principal() = %q, want %q", got, tc.wantPrincipal)
				}
			} else {
				if !errors.Is(err, ErrAuthenticationFailed) || done {
					t.Fatalf("Step: done %v, err %v; want an authentication failure", done, err)
				}
				if err.Error() != tc.wantMsg {
					t.Errorf("message %q, want %q", err.Error(), tc.wantMsg)
				}
				if sess.Principal() != "" {
					t.Errorf("Principal() = %q after failure", sess.Principal())
				}
			}
			if _, _, err := sess.Step([]byte("\x00alice\x00alice-secret")); !errors.Is(err, ErrAuthenticationFailed) {
				t.Errorf("second Step: err = %v, want a failure", err)
			}
		})
	}
}

func TestNewSession(t *testing.T) {
	if diff := cmp.Diff([]string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}, SupportedMechanisms()); diff != "" {
		t.Errorf("SupportedMechanisms (-want +got):\n%s", diff)
	}
	store := newSASLTestStore(t)
	for _, m := range SupportedMechanisms() {
		if _, err := NewSession(m, store.lookup); err != nil {
			t.Errorf("NewSession(%q): %v", m, err)
		}
	}
	for _, m := range []string{"", "plain", "GSSAPI", "OAUTHBEARER", "SCRAM-SHA-1", "scram-sha-512"} {
		if _, err := NewSession(m, store.lookup); !errors.Is(err, ErrUnsupportedMechanism) {
			t.Errorf("NewSession(%q): err = %v, want ErrUnsupportedMechanism", m, err)
		}
	}
	if _, err := NewSession(MechanismPlain, nil); err == nil {
		t.Error("NewSession without credentials succeeded")
	}
	mechs := SupportedMechanisms()
	mechs[0] = "changed"
	if slices.Contains(SupportedMechanisms(), "changed") {
		t.Error("SupportedMechanisms shares its slice")
	}
}

// FuzzSASLSessionStep feeds arbitrary tokens to every mechanism: a session
// must never panic, and random bytes must never authenticate.
func FuzzSASLSessionStep(f *testing.F) {
	store := saslTestStore{}
	store.add(f, "alice", "alice-secret", MechanismScramSHA256, MechanismScramSHA512)
	for _, seed := range [][2]string{
		{"", ""},
		{"n,,n=alice,r=abc", "c=biws,r=abc,p=AAAA"},
		{"n,,n=alice,r=abc,tokenauth=true", ""},
		{"y,a=alice,n=alice,r=x", "c=eSxhPWFsaWNlLA==,r=x,p=="},
		{"p=tls-exporter,,n=alice,r=abc", "c=,r=,p="},
		{"n,,n==,r=", ",,,,"},
		{"\x00alice\x00wrong", "\x00alice\x00wrong"},
		{"\x00\x00", "\xff\xfe"},
		{",,,,,,,,", "=,=,=,="},
	} {
		f.Add([]byte(seed[0]), []byte(seed[1]))
	}
	f.Fuzz(func(t *testing.T, first, second []byte) {
		for _, mech := range SupportedMechanisms() {
			sess, err := NewSession(mech, store.lookup)
			if err != nil {
				t.Fatal(err)
			}
			for _, tok := range [][]byte{first, second} {
				_, done, err := sess.Step(tok)
				if done {
					t.Fatalf("%s authenticated %q then %q as %q", mech, first, second, sess.Principal())
				}
				if err != nil {
					if !errors.Is(err, ErrAuthenticationFailed) {
						t.Fatalf("%s: error %v does not wrap ErrAuthenticationFailed", mech, err)
					}
					break
				}
			}
		}
	})
}
