package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/chronik-go/chronik/broker"
	"github.com/chronik-go/chronik/ops"
	"github.com/chronik-go/chronik/tier1"
)

// composeService is the part of a compose.yaml service the doc shows.
type composeService struct {
	Image       string            `yaml:"image"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	NetworkMode string            `yaml:"network_mode"`
	Volumes     []string          `yaml:"volumes"`
}

// readCompose parses the repository's compose.yaml, found from the working
// directory up (the generator runs at the root, its test in ops/gendocs).
func readCompose() (map[string]composeService, error) {
	dir, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil, fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
	b, err := os.ReadFile(filepath.Join(dir, "compose.yaml"))
	if err != nil {
		return nil, err
	}
	return parseCompose(b)
}

// parseCompose decodes compose.yaml and rejects a CHRONIK_* variable that
// is no setting, which the broker would silently ignore.
func parseCompose(b []byte) (map[string]composeService, error) {
	var f struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("compose.yaml: %w", err)
	}
	known := map[string]bool{}
	for _, s := range ops.Settings() {
		known[s.Env] = true
	}
	for name, svc := range f.Services {
		for k := range svc.Environment {
			if strings.HasPrefix(k, "CHRONIK_") && !known[k] {
				return nil, fmt.Errorf("compose.yaml: service %s sets %s, which is no setting of ops/settings.go", name, k)
			}
		}
	}
	return f.Services, nil
}

func renderDocker(d *doc) {
	services, err := readCompose()
	if err != nil {
		panic("gendocs: " + err.Error())
	}
	var brokers []string
	for name, svc := range services {
		if svc.Environment["CHRONIK_NODE_ID"] != "" {
			brokers = append(brokers, name)
		}
	}
	slices.Sort(brokers)

	d.p("## Docker")
	d.p("")
	d.p("`Dockerfile` builds the broker image: the static `chronik` binary on an empty base, run as user")
	d.p("65532, with `CHRONIK_DATA_DIR=/var/lib/chronik` as a volume and ports %s (Kafka), %s (Raft) and %s (HTTP).",
		defaultPort("CHRONIK_KAFKA_ADDR"), defaultPort("CHRONIK_RAFT_ADDR"), defaultPort("CHRONIK_HTTP_ADDR"))
	d.p("There is no shell in it: its `HEALTHCHECK` runs `chronik health --live` (`/healthz`), and")
	d.p("`chronik health` without `--live` checks readiness (`/readyz`) for orchestrators; both find the")
	d.p("listener from `CHRONIK_HTTP_ADDR`.")
	d.p("")
	d.p("`compose.yaml` runs these services (this table is read from the file):")
	d.p("")
	d.row("service", "image", "network", "published (host:container)", "node id", "advertised to clients", "volumes")
	d.row("---", "---", "---", "---", "---", "---", "---")
	for _, name := range slices.Sorted(maps.Keys(services)) {
		svc := services[name]
		var ports []string
		for _, p := range svc.Ports {
			ports = append(ports, code(p))
		}
		var vols []string
		for _, v := range svc.Volumes {
			vols = append(vols, code(v))
		}
		network := code(svc.NetworkMode)
		if svc.NetworkMode == "" {
			network = "its own"
		}
		d.row(code(name), code(svc.Image), network, strings.Join(ports, ", "), svc.Environment["CHRONIK_NODE_ID"],
			code(svc.Environment["CHRONIK_ADVERTISED_ADDR"]), strings.Join(vols, ", "))
	}
	d.p("")
	if len(brokers) > 0 {
		d.p("Every broker also gets:")
		d.p("")
		first := services[brokers[0]].Environment
		var keys []string
		for k, v := range first {
			same := true
			for _, b := range brokers[1:] {
				same = same && services[b].Environment[k] == v
			}
			if same {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			d.p("- `%s=%s`", k, first[k])
		}
		d.p("")
	}
	d.p("Clients on the host reach each broker at the address it advertises (`127.0.0.1:<port>`, published")
	d.p("on the host); the brokers reach each other by service name on the compose network: followers")
	d.p("fetch from `CHRONIK_INTERNAL_ADDR` and the Raft voters are `CHRONIK_CLUSTER_PEERS`. The first")
	d.p("upload creates the MinIO bucket. `make e2e` (`scripts/e2e.sh`) builds both images locally from host-built static")
	d.p("binaries, names them through `CHRONIK_IMAGE` and `CHRONIK_MINIO_IMAGE`, and runs `up --no-build`,")
	d.p("so it needs no image registry.")
	d.p("")
	d.p("Container sizing: a broker's memory is mostly the WAL's batches, at most about %s with the",
		mib(2*defaultProfile().MemoryBytes))
	d.p("default profile (see WAL profiles above), plus read-ahead of requests; its volume holds the WAL,")
	d.p("the sealed segments until `local.retention.*` deletes archived ones, and a cache of archived")
	d.p("chunks of at most %s.", mib(broker.DefaultConfig().Tier3CacheBytes))
	d.p("")
	d.p("`docs/grafana/chronik-dashboard.json` is a Grafana dashboard of the metrics above: import it and")
	d.p("pick a Prometheus data source that scrapes each broker's `/metrics`.")
}

func defaultProfile() tier1.Profile {
	p, err := tier1.ProfileByName(tier1.DefaultProfileName)
	if err != nil {
		panic("gendocs: " + err.Error())
	}
	return p
}
