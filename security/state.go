package security

import (
	"maps"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
)

// State is the security metadata replicated through the controller (or
// kept in a standalone broker's data directory): SCRAM users and ACLs.
//
// A *State is immutable once published: changes return a new State, which
// shares what did not change with the old one. A nil *State is the empty
// state for every method. Do not copy a State value; pass pointers.
type State struct {
	Users map[string]map[string]ScramCredential `json:"users,omitempty"` // user → mechanism → credential
	ACLs  []ACL                                 `json:"acls,omitempty"`  // in creation order

	// The authorization index is built on first use, by whichever reader
	// gets there first; it is why a State must not change once read.
	indexOnce sync.Once
	index     *aclIndex
}

func (s *State) aclIndex() *aclIndex {
	if s == nil {
		return emptyACLIndex
	}
	s.indexOnce.Do(func() { s.index = buildACLIndex(s.ACLs) })
	return s.index
}

// ScramUpsert sets one user's credential for one mechanism, from the salted
// password the client computed (AlterUserScramCredentials upsertion).
type ScramUpsert struct {
	User, Mechanism string
	Iterations      int32
	Salt            []byte
	SaltedPassword  []byte
}

// ScramDeletion removes one user's credential for one mechanism.
type ScramDeletion struct {
	User, Mechanism string
}

// UserResult is AlterScram's outcome for one user; Code 0 is success.
type UserResult struct {
	User    string
	Code    int16
	Message string
}

// AlterScram applies deletions, then upserts, with the per-user results of
// Kafka's AlterUserScramCredentials, in the order users first appear
// (deletions before upserts). Each user's alterations apply all or not at
// all; a user's error is the first that applies of:
//
//   - DUPLICATE_RESOURCE: the same user and mechanism altered twice
//     (two upserts, two deletions, or a deletion and an upsert);
//   - UNACCEPTABLE_CREDENTIAL: an empty user name;
//   - UNSUPPORTED_SASL_MECHANISM: not SCRAM-SHA-256 or SCRAM-SHA-512;
//   - UNACCEPTABLE_CREDENTIAL: iterations outside [MinScramIterations,
//     MaxScramIterations], or a salt or salted password that cannot make a
//     credential;
//   - RESOURCE_NOT_FOUND: deleting a credential that does not exist.
//
// Duplicates are per mechanism, as in Kafka's ZooKeeper-era broker, so that
// one request may set both SCRAM-SHA-256 and SCRAM-SHA-512 for a user, as
// kafka-configs does; KRaft's controller allows one alteration per user.
func (s *State) AlterScram(upserts []ScramUpsert, deletions []ScramDeletion) (*State, []UserResult) {
	type key struct{ user, mechanism string }
	var (
		order   []string                     // users in order of first appearance
		known   = map[string]bool{}          // users in order
		counts  = map[key]int{}              // alterations per user and mechanism
		failed  = map[string]*Error{}        // first error per user
		removes = map[string][]string{}      // valid deletions per user, in request order
		sets    = map[string][]ScramUpsert{} // valid upserts per user, in request order
		creds   = map[key]ScramCredential{}  // derived from the valid upserts
	)
	appear := func(user, mechanism string) {
		if !known[user] {
			known[user] = true
			order = append(order, user)
		}
		counts[key{user, mechanism}]++
	}
	for _, d := range deletions {
		appear(d.User, d.Mechanism)
	}
	for _, u := range upserts {
		appear(u.User, u.Mechanism)
	}
	fail := func(user string, e *Error) {
		if _, ok := failed[user]; !ok {
			failed[user] = e
		}
	}
	// Duplicates first: they make every other alteration of the user moot.
	for k, n := range counts {
		if n > 1 {
			failed[k.user] = errorf(kerr.DuplicateResource, "A user credential cannot be altered twice in the same request")
		}
	}
	for _, d := range deletions {
		if e := checkScramUserAndMechanism(d.User, d.Mechanism); e != nil {
			fail(d.User, e)
		} else if _, ok := s.Credential(d.User, d.Mechanism); !ok {
			fail(d.User, errorf(kerr.ResourceNotFound, "Attempt to delete a user credential that does not exist"))
		} else {
			removes[d.User] = append(removes[d.User], d.Mechanism)
		}
	}
	for _, u := range upserts {
		if e := checkScramUserAndMechanism(u.User, u.Mechanism); e != nil {
			fail(u.User, e)
			continue
		}
		switch {
		case u.Iterations < MinScramIterations:
			fail(u.User, errorf(kerr.UnacceptableCredential, "Too few iterations"))
			continue
		case u.Iterations > MaxScramIterations:
			fail(u.User, errorf(kerr.UnacceptableCredential, "Too many iterations"))
			continue
		}
		cred, err := CredentialFromSaltedPassword(u.Mechanism, u.Salt, u.SaltedPassword, u.Iterations)
		if err != nil {
			fail(u.User, errorf(kerr.UnacceptableCredential, "%v", err))
			continue
		}
		creds[key{u.User, u.Mechanism}] = cred
		sets[u.User] = append(sets[u.User], u)
	}

	results := make([]UserResult, 0, len(order))
	var users map[string]map[string]ScramCredential // copy-on-write of s.Users
	for _, user := range order {
		if e, ok := failed[user]; ok {
			results = append(results, UserResult{User: user, Code: e.Code, Message: e.Message})
			continue
		}
		results = append(results, UserResult{User: user})
		if users == nil {
			users = maps.Clone(s.users())
			if users == nil {
				users = map[string]map[string]ScramCredential{}
			}
		}
		mechs := maps.Clone(users[user])
		if mechs == nil {
			mechs = map[string]ScramCredential{}
		}
		for _, m := range removes[user] {
			delete(mechs, m)
		}
		for _, u := range sets[user] {
			mechs[u.Mechanism] = creds[key{user, u.Mechanism}]
		}
		if len(mechs) == 0 {
			delete(users, user)
		} else {
			users[user] = mechs
		}
	}
	if users == nil {
		return s.orEmpty(), results
	}
	if len(users) == 0 {
		users = nil
	}
	return &State{Users: users, ACLs: s.acls()}, results
}

func checkScramUserAndMechanism(user, mechanism string) *Error {
	if user == "" {
		return errorf(kerr.UnacceptableCredential, "Username must not be empty")
	}
	if _, err := scramHashFor(mechanism); err != nil {
		return errorf(kerr.UnsupportedSaslMechanism, "Unknown SCRAM mechanism")
	}
	return nil
}

// CreateACLs validates and adds each binding, with one result per binding
// (nil: success). The host is stored in CanonicalHost's form. A binding
// already present, or given twice, is stored once and is a success.
func (s *State) CreateACLs(acls []ACL) (*State, []*Error) {
	results := make([]*Error, len(acls))
	have := make(map[ACL]bool, len(s.acls()))
	for _, a := range s.acls() {
		have[a] = true
	}
	var added []ACL
	for i, a := range acls {
		if e := a.Validate(); e != nil {
			results[i] = e
			continue
		}
		a.Host, _ = CanonicalHost(a.Host)
		if have[a] {
			continue
		}
		have[a] = true
		added = append(added, a)
	}
	if len(added) == 0 {
		return s.orEmpty(), results
	}
	next := make([]ACL, 0, len(s.acls())+len(added))
	next = append(append(next, s.acls()...), added...)
	return &State{Users: s.users(), ACLs: next}, results
}

// DeleteACLs removes every binding that matches any of the filters, all
// judged against the state before the request. Per filter it returns the
// bindings that filter matched (a binding matching several filters is
// listed under each, as Kafka does), or the error that made it invalid.
func (s *State) DeleteACLs(filters []ACLFilter) (*State, [][]ACL, []*Error) {
	matched := make([][]ACL, len(filters))
	errs := make([]*Error, len(filters))
	gone := make([]bool, len(s.acls()))
	removedSome := false
	for i, f := range filters {
		if e := f.Validate(); e != nil {
			errs[i] = e
			continue
		}
		for j, a := range s.acls() {
			if f.Matches(a) {
				matched[i] = append(matched[i], a)
				gone[j] = true
				removedSome = true
			}
		}
	}
	if !removedSome {
		return s.orEmpty(), matched, errs
	}
	var kept []ACL
	for j, a := range s.acls() {
		if !gone[j] {
			kept = append(kept, a)
		}
	}
	return &State{Users: s.users(), ACLs: kept}, matched, errs
}

// DescribeACLs returns the bindings f matches, in creation order. An
// invalid filter matches nothing; callers validate it first to report why.
func (s *State) DescribeACLs(f ACLFilter) []ACL {
	if f.Validate() != nil {
		return nil
	}
	var out []ACL
	for _, a := range s.acls() {
		if f.Matches(a) {
			out = append(out, a)
		}
	}
	return out
}

// Credential returns the user's credential for mechanism.
func (s *State) Credential(user, mechanism string) (ScramCredential, bool) {
	c, ok := s.users()[user][mechanism]
	return c, ok
}

// Mechanisms returns the mechanisms the user has credentials for, sorted
// (DescribeUserScramCredentials).
func (s *State) Mechanisms(user string) []string {
	return slices.Sorted(maps.Keys(s.users()[user]))
}

// UserNames returns every user with a credential, sorted.
func (s *State) UserNames() []string {
	return slices.Sorted(maps.Keys(s.users()))
}

// Empty reports whether there are no users and no ACLs.
func (s *State) Empty() bool {
	return len(s.users()) == 0 && len(s.acls()) == 0
}

func (s *State) users() map[string]map[string]ScramCredential {
	if s == nil {
		return nil
	}
	return s.Users
}

func (s *State) acls() []ACL {
	if s == nil {
		return nil
	}
	return s.ACLs
}

// orEmpty is s, or a new empty State for nil, so that the change methods
// always return a State a caller can read fields from.
func (s *State) orEmpty() *State {
	if s == nil {
		return &State{}
	}
	return s
}
