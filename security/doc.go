// Package security is the I/O-free core of Chronik's authentication and
// authorization: SASL server sessions, SCRAM credentials, Kafka ACLs and the
// decision whether a principal may perform an operation. Nothing here reads
// a socket, a file or a clock; the broker feeds it tokens and requests, the
// controller replicates its [State].
//
// # Principals
//
// A principal is a string "Type:name", as in Kafka; Chronik only ever
// authenticates users, so every principal it produces is "User:<name>":
//
//   - a SASL user (PLAIN or SCRAM) is "User:" + the username it
//     authenticated as;
//   - a TLS client whose certificate was verified is "User:" + the
//     certificate's subject distinguished name (Kafka's default
//     principal builder);
//   - any other connection is [AnonymousPrincipal], "User:ANONYMOUS".
//
// # Mechanisms
//
// [SupportedMechanisms] are PLAIN (RFC 4616), SCRAM-SHA-256 and
// SCRAM-SHA-512 (RFC 5802, RFC 7677). There is one user store, the SCRAM
// credentials: PLAIN checks a password against the user's SCRAM-SHA-512
// credential, or SCRAM-SHA-256 when that is all the user has. Delegation
// tokens (SCRAM with the "tokenauth" extension) and OAUTHBEARER are not
// supported.
//
// # Credentials
//
// The password is never stored, and SCRAM means the server never sees it
// either: a [ScramCredential] holds the salt, the iteration count and
// RFC 5802's StoredKey = H(HMAC(SaltedPassword, "Client Key")) and
// ServerKey = HMAC(SaltedPassword, "Server Key"), exactly what Kafka keeps
// (KIP-84, KIP-554). StoredKey lets the server check a client's proof,
// ServerKey lets it prove itself back. A stolen credential does not log
// anyone in by itself, but it can be attacked offline and, with one
// recorded exchange of that user, replayed into a working client key, so
// the state holding credentials is as sensitive as a password file. Passwords are salted
// as UTF-8 bytes without SASLprep, as Kafka's tools do, so a credential
// made by Kafka's kafka-configs or by Chronik's CLI is the same.
//
// A failed authentication does not say whether the user exists: an unknown
// user gets a made-up salt that is stable for the life of the process and
// the default 4096 iterations, is hashed like a known one, and fails with
// the same error as a wrong password, at the same step.
//
// # ACLs
//
// An [ACL] is Kafka's AclBinding: principal P from host H is allowed (or
// denied) operation O on resources of type T whose name is N (literal), or
// starts with N (prefixed). [Authorizer.Authorize] follows Kafka's
// StandardAuthorizer:
//
//   - super users may do anything;
//   - the bindings that apply to a resource are the literal ones with its
//     name, the literal ones named "*", and the prefixed ones whose name is
//     a prefix of its name;
//   - of those, a binding matches when its principal is the caller's or
//     "User:*", its host is the caller's or "*", and its operation is the
//     requested one or ALL; an ALLOW of READ, WRITE, DELETE or ALTER also
//     allows DESCRIBE, and an ALLOW of ALTER_CONFIGS allows
//     DESCRIBE_CONFIGS (DENY bindings imply nothing);
//   - any matching DENY refuses, else any matching ALLOW permits;
//   - when no binding applies to the resource at all, whoever it names,
//     [Authorizer.AllowIfNoACL] decides (Kafka's
//     allow.everyone.if.no.acl.found); otherwise the answer is no.
//
// # Determinism
//
// The controller's state machine replays [State.AlterScram],
// [State.CreateACLs] and [State.DeleteACLs] on every node, so they use no
// randomness, no clock and no map iteration order: the same state and
// request give the same new state and results everywhere. A *State is
// never modified once published; every change returns a new one.
package security
