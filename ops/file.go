package ops

import (
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// fileValue is one setting read from the config file, as text.
type fileValue struct {
	value  string
	origin string // "chronik.yaml: wal_profile", for messages
}

// readConfigFile reads a YAML mapping of config-file keys to scalar values
// (a list is accepted where the setting takes a comma-separated list).
// Unknown and repeated keys are errors: a misspelt key silently ignored is
// the failure the configuration contract exists to prevent.
func readConfigFile(path, origin string) (map[string]fileValue, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: cannot read the config file: %w", origin, path, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	out := make(map[string]fileValue)
	if len(doc.Content) == 0 {
		return out, nil // empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config file %s: line %d: the top level must map setting keys to values, e.g. data_dir: ./data", path, root.Line)
	}
	keys := make(map[string]*Setting)
	for i := range settings {
		if settings[i].Key != "" {
			keys[settings[i].Key] = &settings[i]
		}
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if keys[k.Value] == nil {
			return nil, fmt.Errorf("config file %s: line %d: unknown key %q%s", path, k.Line, k.Value, suggestKey(k.Value, keys))
		}
		if _, dup := out[k.Value]; dup {
			return nil, fmt.Errorf("config file %s: line %d: key %q appears twice: keep one", path, k.Line, k.Value)
		}
		val, err := scalarText(v)
		if err != nil {
			return nil, fmt.Errorf("config file %s: line %d: %s %v", path, v.Line, k.Value, err)
		}
		if v.Tag == "!!null" {
			continue // "key:" with no value leaves the setting to its default
		}
		out[k.Value] = fileValue{value: val, origin: path + ": " + k.Value}
	}
	return out, nil
}

func scalarText(n *yaml.Node) (string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Value, nil
	case yaml.SequenceNode:
		parts := make([]string, 0, len(n.Content))
		for _, e := range n.Content {
			if e.Kind != yaml.ScalarNode {
				return "", fmt.Errorf("must be a list of plain values")
			}
			parts = append(parts, e.Value)
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("must be a plain value, not a mapping")
}

// suggestKey recognises the usual slips: a flag name, an environment
// variable name, or another case.
func suggestKey(key string, keys map[string]*Setting) string {
	norm := strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(key, "--"), "CHRONIK_"))
	norm = strings.ReplaceAll(norm, "-", "_")
	if keys[norm] != nil {
		return fmt.Sprintf(": did you mean %s?", norm)
	}
	for k, s := range keys {
		if s.Flag != "" && strings.ReplaceAll(s.Flag, "-", "_") == norm {
			return fmt.Sprintf(": did you mean %s?", k)
		}
	}
	return " (the keys are listed by chronik start --help)"
}
