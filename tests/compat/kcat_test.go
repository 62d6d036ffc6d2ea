package compat_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// requireKcat skips the test when the kcat binary (Debian package kcat) is
// missing, except in CI, where it must be installed.
func requireKcat(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("kcat"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kcat is not installed (apt-get install kcat): %v", err)
		}
		t.Skipf("kcat is not installed (apt-get install kcat); skipping: %v", err)
	}
}

// kcat execs the kcat CLI (librdkafka): one `kcat -P` per partition reading
// key:value lines from stdin, and one `kcat -C` over all partitions, without a
// group. kcat's -H headers are fixed per invocation, so its records carry the
// codec and their partition rather than their index.
var kcat = client{
	name: "kcat",
	headers: func(r run, i int) []header {
		return []header{{"codec", r.codec.name}, {"partition", strconv.Itoa(int(partitionOf(i)))}}
	},
	produce: func(ctx context.Context, t *testing.T, r run) error {
		for p := range int32(partitions) {
			args := []string{"-P", "-b", r.addr, "-t", r.topic, "-p", strconv.Itoa(int(p)),
				"-K", ":", "-H", "codec=" + r.codec.name, "-H", "partition=" + strconv.Itoa(int(p)),
				"-X", "acks=all", "-X", "enable.idempotence=true"}
			if r.codec.name != "none" {
				args = append(args, "-z", r.codec.name)
			}
			cmd := exec.CommandContext(ctx, "kcat", args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			stdin, err := cmd.StdinPipe()
			if err != nil {
				return err
			}
			if err := cmd.Start(); err != nil {
				return err
			}
			w := bufio.NewWriterSize(stdin, 1<<16)
			var werr error
			for i := int(p); i < r.n && werr == nil; i += partitions {
				w.Write(key(i))
				w.WriteByte(':')
				w.Write(value(i))
				werr = w.WriteByte('\n')
			}
			if werr == nil {
				werr = w.Flush()
			}
			stdin.Close()
			// kcat -P exits once every message is delivered or failed, with a
			// non-zero status if any failed.
			if err := cmd.Wait(); err != nil || werr != nil {
				return fmt.Errorf("kcat -P partition %d: %v (stdin: %v)\n%s", p, err, werr, stderr.Bytes())
			}
			if s := strings.TrimSpace(stderr.String()); s != "" {
				t.Logf("kcat -P partition %d stderr:\n%s", p, s)
			}
		}
		return nil
	},
	consume: func(ctx context.Context, t *testing.T, r run, c *checker) error {
		// -e exits at the end of every partition, -c after n records; both
		// bound the run. Fields are tab-separated; no key or value has tabs.
		cmd := exec.CommandContext(ctx, "kcat", "-C", "-b", r.addr, "-t", r.topic,
			"-o", "beginning", "-c", strconv.Itoa(r.n), "-e", "-q",
			"-f", `%p\t%o\t%k\t%h\t%s\n`)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		waited := false
		defer func() {
			if !waited { // an early return: stop kcat
				cmd.Process.Kill()
				cmd.Wait()
			}
		}()

		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			got, err := parseKcatLine(sc.Text())
			if err != nil {
				return err
			}
			if err := c.add(got); err != nil {
				return err
			}
		}
		if err := sc.Err(); err != nil {
			return err
		}
		io.Copy(io.Discard, stdout)
		waited = true
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("kcat -C: %v\n%s", err, stderr.Bytes())
		}
		return nil
	},
}

// parseKcatLine parses "partition\toffset\tkey\theaders\tvalue" as printed by
// -f '%p\t%o\t%k\t%h\t%s\n', headers being "k1=v1,k2=v2".
func parseKcatLine(line string) (record, error) {
	f := strings.SplitN(line, "\t", 5)
	if len(f) != 5 {
		return record{}, fmt.Errorf("kcat printed %q: want 5 tab-separated fields", line)
	}
	p, err1 := strconv.ParseInt(f[0], 10, 32)
	o, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return record{}, fmt.Errorf("kcat printed %q: bad partition or offset", line)
	}
	got := record{Partition: int32(p), Offset: o, Key: f[2], Value: f[4]}
	if f[3] != "" {
		for _, kv := range strings.Split(f[3], ",") {
			k, v, _ := strings.Cut(kv, "=")
			got.Headers = append(got.Headers, header{k, v})
		}
	}
	return got, nil
}
