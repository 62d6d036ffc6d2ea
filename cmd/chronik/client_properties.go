package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"

	"github.com/chronik-go/chronik/security"
)

// clientProps is what a Kafka client properties file (--command-config)
// says about security.
type clientProps struct {
	protocol, mechanism, username, password setting
	caFile, certFile, keyFile               setting
	skipHostnameCheck                       bool
	// jaasMechanism is PLAIN or SCRAM after a sasl.jaas.config naming
	// PlainLoginModule or ScramLoginModule, found at jaasWhere.
	jaasMechanism, jaasWhere string
}

// propertyKeys are the keys a properties file may hold, for the error
// about any other.
const propertyKeys = "security.protocol, sasl.mechanism, sasl.username, sasl.password, sasl.jaas.config, " +
	"ssl.ca.location, ssl.certificate.location, ssl.key.location, ssl.truststore.location, ssl.keystore.location " +
	"(with ssl.truststore.type and ssl.keystore.type PEM), ssl.endpoint.identification.algorithm"

// parseClientProperties reads the security settings of a Kafka client
// properties file, in java.util.Properties syntax: '#' and '!' comments,
// key=value, key: value or key value, '\' continuing a line, and '\'
// escapes. Both Java's key names and librdkafka's are understood; any other
// key is an error, since a setting that silently does nothing is worse.
// Later keys win over earlier ones, as in Java.
func parseClientProperties(r io.Reader, file string) (clientProps, error) {
	var p clientProps
	var (
		username, password, jaas setting
		truststoreType           = "PEM"
		keystoreType             = "PEM"
		typeWhere                string
	)
	err := readProperties(r, func(line int, key, value string) error {
		where := file + ":" + strconv.Itoa(line)
		s := setting{value: value, name: key, where: where}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%s: %s: %s", where, key, fmt.Sprintf(format, args...))
		}
		switch key {
		case "security.protocol":
			if _, ok := parseSecurityProtocol(value); !ok {
				return bad("%q is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL", value)
			}
			p.protocol = s
		case "sasl.mechanism", "sasl.mechanisms": // Java, librdkafka
			if _, err := parseSASLMechanism(s); err != nil {
				return err
			}
			p.mechanism = s
		case "sasl.username":
			username = s
		case "sasl.password":
			password = s
		case "sasl.jaas.config":
			jaas = s
		case "ssl.ca.location", "ssl.truststore.location":
			p.caFile = s
		case "ssl.certificate.location":
			p.certFile = s
		case "ssl.key.location":
			p.keyFile = s
		case "ssl.keystore.location":
			// A PEM key store holds the key and its certificate chain.
			p.certFile, p.keyFile = s, s
		case "ssl.truststore.type":
			truststoreType, typeWhere = value, where
		case "ssl.keystore.type":
			keystoreType, typeWhere = value, where
		case "ssl.endpoint.identification.algorithm":
			switch strings.ToLower(strings.TrimSpace(value)) {
			case "", "none":
				p.skipHostnameCheck = true
			case "https":
				p.skipHostnameCheck = false
			default:
				return bad("%q is not https, none or empty", value)
			}
		case "ssl.truststore.password", "ssl.keystore.password", "ssl.key.password":
			return bad("Chronik reads unencrypted PEM files, which have no password: remove the line (and decrypt the key: openssl pkcs8 -in KEY -out KEY.plain)")
		default:
			return bad("unknown key: Chronik's client reads %s (other client settings are flags)", propertyKeys)
		}
		return nil
	})
	if err != nil {
		return clientProps{}, err
	}
	for _, t := range []struct{ key, value string }{{"ssl.truststore.type", truststoreType}, {"ssl.keystore.type", keystoreType}} {
		if !strings.EqualFold(strings.TrimSpace(t.value), "PEM") {
			return clientProps{}, fmt.Errorf("%s: %s=%s: Chronik reads PEM files only: convert the store to PEM and set %s=PEM (or use ssl.ca.location, ssl.certificate.location and ssl.key.location)",
				typeWhere, t.key, t.value, t.key)
		}
	}
	if jaas.set() {
		if username.set() || password.set() {
			return clientProps{}, fmt.Errorf("%s: both sasl.jaas.config (Java) and sasl.username or sasl.password (librdkafka) are set: keep one form", file)
		}
		mech, user, pass, err := parseJAAS(jaas.value)
		if err != nil {
			return clientProps{}, fmt.Errorf("%s: sasl.jaas.config: %w", jaas.where, err)
		}
		if p.mechanism.set() {
			m := strings.ToUpper(strings.TrimSpace(p.mechanism.value))
			if (mech == security.MechanismPlain) != (m == security.MechanismPlain) {
				module := "ScramLoginModule"
				if mech == security.MechanismPlain {
					module = "PlainLoginModule"
				}
				return clientProps{}, fmt.Errorf("%s: sasl.jaas.config names %s, but %s: use PlainLoginModule for PLAIN and ScramLoginModule for SCRAM-SHA-256 and SCRAM-SHA-512", jaas.where, module, p.mechanism)
			}
		}
		p.jaasMechanism, p.jaasWhere = mech, jaas.where
		username = setting{value: user, name: "sasl.jaas.config username", where: jaas.where}
		password = setting{value: pass, name: "sasl.jaas.config password", where: jaas.where}
	}
	p.username, p.password = username, password
	return p, nil
}

// readProperties calls fn for each key and value of a java.util.Properties
// text, with the line the entry starts on.
func readProperties(r io.Reader, fn func(line int, key, value string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var (
		logical strings.Builder
		start   int
		n       int
		cont    bool
	)
	emit := func() error {
		key, value := splitProperty(logical.String())
		logical.Reset()
		k, err := unescapeProperty(key)
		if err != nil {
			return fmt.Errorf("line %d: %w", start, err)
		}
		v, err := unescapeProperty(value)
		if err != nil {
			return fmt.Errorf("line %d: %w", start, err)
		}
		return fn(start, k, v)
	}
	for sc.Scan() {
		n++
		text := strings.TrimLeft(sc.Text(), " \t\f")
		if !cont {
			if text == "" || text[0] == '#' || text[0] == '!' {
				continue
			}
			start = n
		}
		// An odd number of trailing backslashes continues the line.
		trailing := len(text) - len(strings.TrimRight(text, `\`))
		if cont = trailing%2 == 1; cont {
			logical.WriteString(text[:len(text)-1])
			continue
		}
		logical.WriteString(text)
		if err := emit(); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if cont {
		return emit()
	}
	return nil
}

// splitProperty splits a logical line at the first unescaped '=', ':' or
// white space, as java.util.Properties does; the value keeps its trailing
// white space.
func splitProperty(line string) (key, value string) {
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		if c == '\\' {
			i++
			continue
		}
		if c == '=' || c == ':' || c == ' ' || c == '\t' || c == '\f' {
			break
		}
	}
	if i > len(line) {
		i = len(line)
	}
	key, rest := line[:i], line[i:]
	rest = strings.TrimLeft(rest, " \t\f")
	if rest != "" && (rest[0] == '=' || rest[0] == ':') {
		rest = strings.TrimLeft(rest[1:], " \t\f")
	}
	return key, rest
}

func unescapeProperty(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 'f':
			b.WriteByte('\f')
		case 'u':
			if i+5 > len(s) {
				return "", fmt.Errorf(`malformed \uXXXX escape in %q`, s)
			}
			r, err := strconv.ParseUint(s[i+1:i+5], 16, 16)
			if err != nil {
				return "", fmt.Errorf(`malformed \uXXXX escape in %q`, s)
			}
			b.WriteRune(rune(r))
			i += 4
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), nil
}

// JAAS login modules Kafka's clients use for PLAIN and SCRAM.
const (
	plainLoginModule = "org.apache.kafka.common.security.plain.PlainLoginModule"
	scramLoginModule = "org.apache.kafka.common.security.scram.ScramLoginModule"
)

// parseJAAS reads Kafka's sasl.jaas.config: one login module entry,
//
//	org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="alice-secret";
//
// mech is PLAIN or SCRAM, from the module.
func parseJAAS(s string) (mech, user, pass string, err error) {
	toks, err := jaasTokens(s)
	if err != nil {
		return "", "", "", err
	}
	if len(toks) < 2 || toks[0].quoted || toks[1].quoted {
		return "", "", "", fmt.Errorf("want `%s required username=\"NAME\" password=\"PASSWORD\";`", scramLoginModule)
	}
	switch toks[0].text {
	case plainLoginModule:
		mech = security.MechanismPlain
	case scramLoginModule:
		mech = "SCRAM"
	default:
		return "", "", "", fmt.Errorf("login module %q is not supported: use %s or %s", toks[0].text, scramLoginModule, plainLoginModule)
	}
	switch toks[1].text {
	case "required", "requisite", "sufficient", "optional":
	default:
		return "", "", "", fmt.Errorf("%q after the login module is not a control flag: write required", toks[1].text)
	}
	opts := map[string]string{}
	rest := toks[2:]
	for len(rest) > 0 && !(rest[0].text == ";" && !rest[0].quoted) {
		if len(rest) < 3 || rest[0].quoted || rest[1].text != "=" || rest[1].quoted {
			return "", "", "", fmt.Errorf("options are name=\"value\": near %q", rest[0].text)
		}
		name, value := rest[0].text, rest[2].text
		switch name {
		case "username", "password":
		default:
			return "", "", "", fmt.Errorf("option %q is not supported: give username and password", name)
		}
		if _, dup := opts[name]; dup {
			return "", "", "", fmt.Errorf("option %q is given twice", name)
		}
		opts[name] = value
		rest = rest[3:]
	}
	if len(rest) == 0 {
		return "", "", "", errors.New("the entry does not end with ';'")
	}
	if len(rest) > 1 {
		return "", "", "", errors.New("more than one login module: give one")
	}
	if opts["username"] == "" {
		return "", "", "", errors.New(`no username: add username="NAME"`)
	}
	if opts["password"] == "" {
		return "", "", "", errors.New(`no password: add password="PASSWORD"`)
	}
	return mech, opts["username"], opts["password"], nil
}

type jaasToken struct {
	text   string
	quoted bool
}

func jaasTokens(s string) ([]jaasToken, error) {
	var toks []jaasToken
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case unicode.IsSpace(rune(c)):
			i++
		case c == '=' || c == ';':
			toks = append(toks, jaasToken{text: string(c)})
			i++
		case c == '"':
			var b strings.Builder
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, errors.New("a quoted value is not closed with '\"'")
			}
			i++
			toks = append(toks, jaasToken{text: b.String(), quoted: true})
		default:
			j := i
			for j < len(s) && !unicode.IsSpace(rune(s[j])) && s[j] != '=' && s[j] != ';' && s[j] != '"' {
				j++
			}
			toks = append(toks, jaasToken{text: s[i:j]})
			i = j
		}
	}
	return toks, nil
}
