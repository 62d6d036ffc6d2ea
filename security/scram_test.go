package security

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMechanismCodes(t *testing.T) {
	for _, tc := range []struct {
		code int8
		name string
		ok   bool
	}{
		{1, MechanismScramSHA256, true},
		{2, MechanismScramSHA512, true},
		{0, "", false},
		{3, "", false},
		{-1, "", false},
	} {
		name, ok := MechanismName(tc.code)
		if name != tc.name || ok != tc.ok {
			t.Errorf("MechanismName(%d) = %q, %v; want %q, %v", tc.code, name, ok, tc.name, tc.ok)
		}
		if !tc.ok {
			continue
		}
		code, ok := MechanismCode(tc.name)
		if code != tc.code || !ok {
			t.Errorf("MechanismCode(%q) = %d, %v; want %d, true", tc.name, code, ok, tc.code)
		}
	}
	for _, name := range []string{"", MechanismPlain, "scram-sha-256", "SCRAM-SHA-1"} {
		if code, ok := MechanismCode(name); ok {
			t.Errorf("MechanismCode(%q) = %d, true; want false", name, code)
		}
	}
}

func TestCredentialFromSaltedPasswordRejects(t *testing.T) {
	salt := []byte("0123456789abcdef")
	for _, tc := range []struct {
		name       string
		mechanism  string
		salt       []byte
		salted     []byte
		iterations int32
		want       error
	}{
		{"plain is not SCRAM", MechanismPlain, salt, make([]byte, 32), 4096, ErrUnsupportedMechanism},
		{"lower case name", "scram-sha-256", salt, make([]byte, 32), 4096, ErrUnsupportedMechanism},
		{"too few iterations", MechanismScramSHA256, salt, make([]byte, 32), MinScramIterations - 1, ErrInvalidCredential},
		{"too many iterations", MechanismScramSHA256, salt, make([]byte, 32), MaxScramIterations + 1, ErrInvalidCredential},
		{"no salt", MechanismScramSHA256, nil, make([]byte, 32), 4096, ErrInvalidCredential},
		{"huge salt", MechanismScramSHA256, make([]byte, maxSaltLen+1), make([]byte, 32), 4096, ErrInvalidCredential},
		{"SHA-512 length for SHA-256", MechanismScramSHA256, salt, make([]byte, 64), 4096, ErrInvalidCredential},
		{"SHA-256 length for SHA-512", MechanismScramSHA512, salt, make([]byte, 32), 4096, ErrInvalidCredential},
		{"empty salted password", MechanismScramSHA512, salt, nil, 4096, ErrInvalidCredential},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CredentialFromSaltedPassword(tc.mechanism, tc.salt, tc.salted, tc.iterations)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "security: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestNewScramCredentialAndVerifyPassword(t *testing.T) {
	for _, mech := range []string{MechanismScramSHA256, MechanismScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			cred, err := NewScramCredential(mech, "hunter2", MinScramIterations)
			if err != nil {
				t.Fatal(err)
			}
			if len(cred.Salt) != 32 || cred.Iterations != MinScramIterations {
				t.Errorf("salt %d bytes, %d iterations; want 32 bytes, %d", len(cred.Salt), cred.Iterations, MinScramIterations)
			}
			if !VerifyPassword(mech, cred, "hunter2") {
				t.Error("right password refused")
			}
			for _, wrong := range []string{"", "hunter3", "Hunter2", "hunter2 "} {
				if VerifyPassword(mech, cred, wrong) {
					t.Errorf("password %q accepted", wrong)
				}
			}
			other := MechanismScramSHA512
			if mech == other {
				other = MechanismScramSHA256
			}
			if VerifyPassword(other, cred, "hunter2") {
				t.Errorf("credential accepted under %s", other)
			}
			if VerifyPassword(MechanismPlain, cred, "hunter2") {
				t.Error("credential accepted under PLAIN")
			}

			again, err := NewScramCredential(mech, "hunter2", MinScramIterations)
			if err != nil {
				t.Fatal(err)
			}
			if string(again.Salt) == string(cred.Salt) {
				t.Error("two credentials got the same salt")
			}

			// What a client sends in AlterUserScramCredentials makes the
			// same credential as the server-side derivation.
			salted, err := SaltPassword(mech, "hunter2", cred.Salt, cred.Iterations)
			if err != nil {
				t.Fatal(err)
			}
			fromClient, err := CredentialFromSaltedPassword(mech, cred.Salt, salted, cred.Iterations)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(cred, fromClient); diff != "" {
				t.Errorf("credential from salted password differs (-new +salted):\n%s", diff)
			}
		})
	}
	if _, err := NewScramCredential(MechanismScramSHA256, "x", 1); !errors.Is(err, ErrInvalidCredential) {
		t.Errorf("1 iteration: err = %v, want ErrInvalidCredential", err)
	}
	if _, err := SaltPassword("SCRAM-SHA-1", "x", []byte("salt"), 4096); !errors.Is(err, ErrUnsupportedMechanism) {
		t.Errorf("SCRAM-SHA-1: err = %v, want ErrUnsupportedMechanism", err)
	}
}

func TestVerifyPasswordRejectsDamagedCredential(t *testing.T) {
	cred, err := NewScramCredential(MechanismScramSHA256, "pw", MinScramIterations)
	if err != nil {
		t.Fatal(err)
	}
	for name, damage := range map[string]func(*ScramCredential){
		"no stored key":       func(c *ScramCredential) { c.StoredKey = nil },
		"flipped stored key":  func(c *ScramCredential) { c.StoredKey = append([]byte(nil), c.StoredKey...); c.StoredKey[0] ^= 1 },
		"zero iterations":     func(c *ScramCredential) { c.Iterations = 0 },
		"iterations too high": func(c *ScramCredential) { c.Iterations = MaxScramIterations + 1 },
	} {
		c := cred
		damage(&c)
		if VerifyPassword(MechanismScramSHA256, c, "pw") {
			t.Errorf("%s: password accepted", name)
		}
	}
}

// RFC 7677 section 3: SCRAM-SHA-256 for user "user", password "pencil".
func TestRFC7677Vector(t *testing.T) {
	salt, err := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	if err != nil {
		t.Fatal(err)
	}
	salted, err := SaltPassword(MechanismScramSHA256, "pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := CredentialFromSaltedPassword(MechanismScramSHA256, salt, salted, 4096)
	if err != nil {
		t.Fatal(err)
	}
	creds := func(user, mech string) (ScramCredential, bool) {
		return cred, user == "user" && mech == MechanismScramSHA256
	}
	sess, err := newSession(MechanismScramSHA256, creds, func() string { return "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0" })
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		client, server string
		done           bool
	}{
		{
			client: "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
			server: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		},
		{
			client: "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
			server: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
			done:   true,
		},
	} {
		reply, done, err := sess.Step([]byte(step.client))
		if err != nil {
			t.Fatalf("Step(%q): %v", step.client, err)
		}
		if string(reply) != step.server || done != step.done {
			t.Fatalf("Step(%q) = %q, %v; want %q, %v", step.client, reply, done, step.server, step.done)
		}
	}
	if got := sess.Principal(); got != "User:user" {
		t.Errorf("Principal() = %q, want User:user", got)
	}
}
