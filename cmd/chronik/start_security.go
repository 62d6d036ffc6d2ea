package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/chronik-go/chronik/broker"
	"github.com/chronik-go/chronik/ops"
	"github.com/chronik-go/chronik/security"
)

// securityConfig maps the security settings onto the broker's: listeners,
// TLS, SASL mechanisms, the authorizer, the bootstrap users and the
// controller port's mutual TLS. Every error names the setting.
func securityConfig(cfg ops.Config, bc *broker.Config, log *slog.Logger) error {
	if cfg.Listeners != "" {
		lns, err := security.ParseListeners(cfg.Listeners, cfg.ListenerProtocolMap)
		if err != nil {
			return fmt.Errorf("%s=%q: %w", cfg.Origin("CHRONIK_LISTENERS"), cfg.Listeners, err)
		}
		bc.Listeners = lns
	}
	if cfg.AdvertisedListeners != "" {
		lns := bc.Listeners
		if len(lns) == 0 {
			return fmt.Errorf("%s is set but %s is not: advertised listeners name listeners", cfg.Origin("CHRONIK_ADVERTISED_LISTENERS"), cfg.Origin("CHRONIK_LISTENERS"))
		}
		adv, err := security.ParseAdvertised(cfg.AdvertisedListeners, lns)
		if err != nil {
			return fmt.Errorf("%s=%q: %w", cfg.Origin("CHRONIK_ADVERTISED_LISTENERS"), cfg.AdvertisedListeners, err)
		}
		bc.AdvertisedListeners = adv
	}
	if name := cfg.InterBrokerListener; name != "" {
		var found *security.Listener
		for i := range bc.Listeners {
			if bc.Listeners[i].Name == name {
				found = &bc.Listeners[i]
			}
		}
		switch {
		case found == nil:
			return fmt.Errorf("%s=%q is not one of the listeners in %s", cfg.Origin("CHRONIK_INTER_BROKER_LISTENER_NAME"), name, cfg.Origin("CHRONIK_LISTENERS"))
		case found.Protocol.SASL():
			return fmt.Errorf("%s=%q is a %s listener: brokers authenticate one another with certificates, so use a PLAINTEXT or SSL listener",
				cfg.Origin("CHRONIK_INTER_BROKER_LISTENER_NAME"), name, found.Protocol)
		}
		bc.InterBrokerListener = name
	}

	if cfg.TLSCertFile != "" {
		auth, err := security.ParseClientAuth(cfg.TLSClientAuth)
		if err != nil {
			return fmt.Errorf("%s=%q: %w", cfg.Origin("CHRONIK_TLS_CLIENT_AUTH"), cfg.TLSClientAuth, err)
		}
		if auth != security.ClientAuthNone && cfg.TLSCAFile == "" {
			return fmt.Errorf("%s=%s needs %s to verify client certificates against", cfg.Origin("CHRONIK_TLS_CLIENT_AUTH"), auth, cfg.Origin("CHRONIK_TLS_CA_FILE"))
		}
		files := security.TLSFiles{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile, CAFile: cfg.TLSCAFile, ClientAuth: auth}
		onErr := tlsReloadFailed(log)
		if bc.ServerTLS, err = security.ServerConfig(files, onErr); err != nil {
			return fmt.Errorf("%s: %w", cfg.Origin("CHRONIK_TLS_CERT_FILE"), err)
		}
		// As Kafka, ssl.client.auth is for SSL listeners: SASL clients
		// authenticate with SASL.
		saslFiles := files
		saslFiles.ClientAuth = security.ClientAuthNone
		if bc.SASLServerTLS, err = security.ServerConfig(saslFiles, onErr); err != nil {
			return fmt.Errorf("%s: %w", cfg.Origin("CHRONIK_TLS_CERT_FILE"), err)
		}
		if bc.ClientTLS, err = security.ClientConfig(files, "", onErr); err != nil {
			return fmt.Errorf("%s: %w", cfg.Origin("CHRONIK_TLS_CERT_FILE"), err)
		}
	} else if cfg.TLSCAFile != "" {
		return fmt.Errorf("%s is set without %s: give the broker a certificate too", cfg.Origin("CHRONIK_TLS_CA_FILE"), cfg.Origin("CHRONIK_TLS_CERT_FILE"))
	}
	for _, l := range bc.Listeners {
		if l.Protocol.TLS() && bc.ServerTLS == nil {
			return fmt.Errorf("listener %s needs a certificate: set CHRONIK_TLS_CERT_FILE and CHRONIK_TLS_KEY_FILE (try `chronik certs create`)", l)
		}
	}

	if v := strings.TrimSpace(cfg.SASLMechanisms); v != "" {
		supported := security.SupportedMechanisms()
		for _, m := range strings.Split(v, ",") {
			m = strings.ToUpper(strings.TrimSpace(m))
			if m == "" {
				continue
			}
			ok := false
			for _, s := range supported {
				ok = ok || s == m
			}
			if !ok {
				return fmt.Errorf("%s has %q: the supported mechanisms are %s", cfg.Origin("CHRONIK_SASL_ENABLED_MECHANISMS"), m, strings.Join(supported, ", "))
			}
			bc.SASLMechanisms = append(bc.SASLMechanisms, m)
		}
	}

	superUsers, err := parsePrincipals(cfg.SuperUsers)
	if err != nil {
		return fmt.Errorf("%s=%q: %w", cfg.Origin("CHRONIK_SUPER_USERS"), cfg.SuperUsers, err)
	}
	if cfg.Authorizer == "acl" {
		bc.Authorizer = &security.Authorizer{SuperUsers: superUsers, AllowIfNoACL: cfg.AllowEveryoneIfNoACL}
	}

	if cfg.BootstrapUsersFile != "" {
		f, err := os.Open(cfg.BootstrapUsersFile)
		if err != nil {
			return fmt.Errorf("%s: %w", cfg.Origin("CHRONIK_BOOTSTRAP_USERS_FILE"), err)
		}
		users, err := security.ParseScramUsers(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s=%q: %w", cfg.Origin("CHRONIK_BOOTSTRAP_USERS_FILE"), cfg.BootstrapUsersFile, err)
		}
		bc.BootstrapUsers = users
	}

	if v := strings.TrimSpace(cfg.BootstrapUsers); v != "" {
		users, err := security.ParseScramUsers(strings.NewReader(strings.ReplaceAll(v, "];", "]\n")))
		if err != nil {
			return fmt.Errorf("%s: %w", cfg.Origin("CHRONIK_BOOTSTRAP_USERS"), err)
		}
		bc.BootstrapUsers = append(bc.BootstrapUsers, users...)
	}

	if cfg.ControllerTLS {
		if bc.Cluster == nil {
			return fmt.Errorf("%s is set on a standalone broker: it secures the controller port of a cluster (%s)", cfg.Origin("CHRONIK_CONTROLLER_TLS"), cfg.Origin("CHRONIK_CLUSTER_PEERS"))
		}
		files := security.TLSFiles{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile, CAFile: cfg.TLSCAFile, ClientAuth: security.ClientAuthRequired}
		ctls, err := security.ServerConfig(files, tlsReloadFailed(log))
		if err != nil {
			return fmt.Errorf("%s: %w", cfg.Origin("CHRONIK_CONTROLLER_TLS"), err)
		}
		bc.Cluster.ControllerTLS = ctls
		bc.Cluster.ControllerPrincipals = superUsers
	}
	return nil
}

// parsePrincipals splits Kafka's semicolon-separated principal list.
func parsePrincipals(v string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(v, ";") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if typ, name, ok := strings.Cut(p, ":"); !ok || typ == "" || name == "" {
			return nil, fmt.Errorf("%q is not a principal: write Type:name, e.g. User:admin (separate several with ';')", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// httpTLS returns the HTTP listener's TLS config (CHRONIK_HTTP_TLS), or nil.
func httpTLS(cfg ops.Config, log *slog.Logger) (*tls.Config, error) {
	if !cfg.HTTPTLS {
		return nil, nil
	}
	files := security.TLSFiles{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile, CAFile: cfg.TLSCAFile, ClientAuth: security.ClientAuthNone}
	c, err := security.ServerConfig(files, tlsReloadFailed(log))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Origin("CHRONIK_HTTP_TLS"), err)
	}
	return c, nil
}

// tlsReloadFailed logs a renewed TLS file that could not be used (the
// error says the previous one stays in use).
func tlsReloadFailed(log *slog.Logger) func(error) {
	return func(err error) { log.Error("TLS files changed but could not be loaded", "err", err) }
}
