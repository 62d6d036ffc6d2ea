package security

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// ScramUser is a SCRAM user with its password, as the bootstrap step and
// the CLI give it.
type ScramUser struct {
	Mechanism string
	Name      string
	Password  string
}

// ParseScramUsers reads users in kafka-storage's --add-scram form, one per
// line: SCRAM-SHA-512=[name=admin,password=admin-secret]. A value holding
// a comma or bracket is written in double quotes (password="a,b"). Blank
// lines and lines starting with # are skipped.
func ParseScramUsers(r io.Reader) ([]ScramUser, error) {
	var out []ScramUser
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		u, err := parseScramUser(text)
		if err != nil {
			return nil, fmt.Errorf("security: line %d: %v: write e.g. SCRAM-SHA-512=[name=admin,password=admin-secret]", line, err)
		}
		out = append(out, u)
	}
	return out, sc.Err()
}

func parseScramUser(text string) (ScramUser, error) {
	mech, rest, ok := strings.Cut(text, "=")
	if !ok {
		return ScramUser{}, fmt.Errorf("no '=' after the mechanism")
	}
	mech = strings.ToUpper(strings.TrimSpace(mech))
	if mech != MechanismScramSHA256 && mech != MechanismScramSHA512 {
		return ScramUser{}, fmt.Errorf("mechanism %q is not SCRAM-SHA-256 or SCRAM-SHA-512", mech)
	}
	rest = strings.TrimSpace(rest)
	if !strings.HasPrefix(rest, "[") || !strings.HasSuffix(rest, "]") {
		return ScramUser{}, fmt.Errorf("the attributes are not in [brackets]")
	}
	u := ScramUser{Mechanism: mech}
	attrs := rest[1 : len(rest)-1]
	for attrs != "" {
		key, val, ok := strings.Cut(attrs, "=")
		if !ok {
			return ScramUser{}, fmt.Errorf("attribute %q has no value", attrs)
		}
		key = strings.TrimSpace(key)
		if strings.HasPrefix(val, `"`) {
			end := strings.Index(val[1:], `"`)
			if end < 0 {
				return ScramUser{}, fmt.Errorf("unterminated quote in %s", key)
			}
			attrs = strings.TrimPrefix(strings.TrimSpace(val[end+2:]), ",")
			val = val[1 : end+1]
		} else {
			val, attrs, _ = strings.Cut(val, ",")
		}
		switch key {
		case "name":
			u.Name = val
		case "password":
			u.Password = val
		default:
			return ScramUser{}, fmt.Errorf("unknown attribute %q (name and password are known)", key)
		}
	}
	switch {
	case u.Name == "":
		return ScramUser{}, fmt.Errorf("no name")
	case u.Password == "":
		return ScramUser{}, fmt.Errorf("no password for %s", u.Name)
	}
	return u, nil
}
