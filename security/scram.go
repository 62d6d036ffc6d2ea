package security

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"

	"github.com/xdg-go/scram"
)

// Mechanism names as Kafka spells them in SaslHandshake, and the principal
// of a connection that did not authenticate.
const (
	MechanismPlain       = "PLAIN"
	MechanismScramSHA256 = "SCRAM-SHA-256"
	MechanismScramSHA512 = "SCRAM-SHA-512"
	AnonymousPrincipal   = "User:ANONYMOUS"

	// MinScramIterations and MaxScramIterations are the bounds Kafka puts
	// on AlterUserScramCredentials; every credential Chronik derives or
	// stores is within them.
	MinScramIterations = 4096
	MaxScramIterations = 16384
)

// Errors about mechanisms and credentials (not authentication failures,
// which wrap ErrAuthenticationFailed).
var (
	// ErrUnsupportedMechanism is returned (wrapped) for a mechanism name
	// this package does not implement.
	ErrUnsupportedMechanism = errors.New("security: unsupported SASL mechanism")
	// ErrInvalidCredential is returned (wrapped) for a salt, salted
	// password or iteration count that cannot make a usable credential.
	ErrInvalidCredential = errors.New("security: invalid SCRAM credential")
)

// maxSaltLen bounds the salt a client may choose in
// AlterUserScramCredentials: credentials live in replicated state. Kafka's
// own clients use 32 to 64 bytes.
const maxSaltLen = 1024

// ScramCredential is what is stored for one user and mechanism (KIP-84,
// KIP-554): never the password.
type ScramCredential struct {
	Iterations int32  `json:"iterations"`
	Salt       []byte `json:"salt"`
	StoredKey  []byte `json:"stored_key"`
	ServerKey  []byte `json:"server_key"`
}

// scramHash is one SCRAM mechanism's hash, in the two forms the standard
// library and xdg-go/scram want it.
type scramHash struct {
	newHash func() hash.Hash
	gen     scram.HashGeneratorFcn
	size    int
}

var (
	scramSHA256 = scramHash{sha256.New, scram.SHA256, sha256.Size}
	scramSHA512 = scramHash{sha512.New, scram.SHA512, sha512.Size}
)

func scramHashFor(mechanism string) (scramHash, error) {
	switch mechanism {
	case MechanismScramSHA256:
		return scramSHA256, nil
	case MechanismScramSHA512:
		return scramSHA512, nil
	}
	return scramHash{}, fmt.Errorf("%w: %q is not a SCRAM mechanism", ErrUnsupportedMechanism, mechanism)
}

// MechanismName maps Kafka's SCRAM mechanism number (DescribeUserScramCredentials,
// AlterUserScramCredentials: 1 = SCRAM-SHA-256, 2 = SCRAM-SHA-512) to its name.
func MechanismName(kafkaCode int8) (string, bool) {
	switch kafkaCode {
	case 1:
		return MechanismScramSHA256, true
	case 2:
		return MechanismScramSHA512, true
	}
	return "", false
}

// MechanismCode is the inverse of MechanismName.
func MechanismCode(name string) (int8, bool) {
	switch name {
	case MechanismScramSHA256:
		return 1, true
	case MechanismScramSHA512:
		return 2, true
	}
	return 0, false
}

func checkIterations(iterations int32) error {
	if iterations < MinScramIterations || iterations > MaxScramIterations {
		return fmt.Errorf("%w: %d iterations, want %d to %d", ErrInvalidCredential, iterations, MinScramIterations, MaxScramIterations)
	}
	return nil
}

// CredentialFromSaltedPassword derives StoredKey and ServerKey (RFC 5802)
// from the salted password a client sends in AlterUserScramCredentials.
func CredentialFromSaltedPassword(mechanism string, salt, saltedPassword []byte, iterations int32) (ScramCredential, error) {
	h, err := scramHashFor(mechanism)
	if err != nil {
		return ScramCredential{}, err
	}
	if err := checkIterations(iterations); err != nil {
		return ScramCredential{}, err
	}
	if len(salt) == 0 || len(salt) > maxSaltLen {
		return ScramCredential{}, fmt.Errorf("%w: salt of %d bytes, want 1 to %d", ErrInvalidCredential, len(salt), maxSaltLen)
	}
	// Hi() yields exactly one hash block; any other length is a client
	// bug that would store a credential nobody can ever log in with.
	if len(saltedPassword) != h.size {
		return ScramCredential{}, fmt.Errorf("%w: salted password of %d bytes, %s needs %d", ErrInvalidCredential, len(saltedPassword), mechanism, h.size)
	}
	return h.credential(salt, saltedPassword, iterations), nil
}

func (h scramHash) credential(salt, saltedPassword []byte, iterations int32) ScramCredential {
	clientKey := h.hmac(saltedPassword, "Client Key")
	storedKey := h.newHash()
	storedKey.Write(clientKey)
	return ScramCredential{
		Iterations: iterations,
		Salt:       append([]byte(nil), salt...),
		StoredKey:  storedKey.Sum(nil),
		ServerKey:  h.hmac(saltedPassword, "Server Key"),
	}
}

func (h scramHash) hmac(key []byte, msg string) []byte {
	m := hmac.New(h.newHash, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// saltPassword is Hi(password, salt, iterations) without the bounds check,
// for credentials already known to be sound.
func (h scramHash) saltPassword(password string, salt []byte, iterations int32) ([]byte, error) {
	return pbkdf2.Key(h.newHash, password, salt, int(iterations), h.size)
}

// NewScramCredential salts and hashes a password with a random 32-byte
// salt, for the bootstrap step and the CLI. The password is used as its
// UTF-8 bytes, without SASLprep, as Kafka's tools do.
func NewScramCredential(mechanism, password string, iterations int32) (ScramCredential, error) {
	salt := make([]byte, 32)
	rand.Read(salt) // never fails (crypto/rand, Go 1.24+)
	salted, err := SaltPassword(mechanism, password, salt, iterations)
	if err != nil {
		return ScramCredential{}, err
	}
	return CredentialFromSaltedPassword(mechanism, salt, salted, iterations)
}

// SaltPassword returns Hi(password, salt, iterations), PBKDF2 with the
// mechanism's HMAC: what a client sends in AlterUserScramCredentials.
func SaltPassword(mechanism, password string, salt []byte, iterations int32) ([]byte, error) {
	h, err := scramHashFor(mechanism)
	if err != nil {
		return nil, err
	}
	if err := checkIterations(iterations); err != nil {
		return nil, err
	}
	salted, err := h.saltPassword(password, salt, iterations)
	if err != nil {
		return nil, fmt.Errorf("security: salting password: %w", err)
	}
	return salted, nil
}

// VerifyPassword reports whether password matches cred, comparing
// StoredKey in constant time. It is how SASL PLAIN and HTTP basic auth
// check a password against the SCRAM users.
func VerifyPassword(mechanism string, cred ScramCredential, password string) bool {
	h, err := scramHashFor(mechanism)
	if err != nil || checkIterations(cred.Iterations) != nil {
		return false
	}
	salted, err := h.saltPassword(password, cred.Salt, cred.Iterations)
	if err != nil {
		return false
	}
	got := h.credential(cred.Salt, salted, cred.Iterations)
	return hmac.Equal(got.StoredKey, cred.StoredKey)
}

// toScram is the credential in xdg-go/scram's form.
func (c ScramCredential) toScram() scram.StoredCredentials {
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(c.Salt), Iters: int(c.Iterations)},
		StoredKey:  c.StoredKey,
		ServerKey:  c.ServerKey,
	}
}
