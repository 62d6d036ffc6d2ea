// Package testharness runs Chronik brokers as real processes for end-to-end
// tests: compatibility with real Kafka clients, crash recovery, and (later)
// multi-broker clusters.
//
// A test binary builds ./cmd/chronik once (see [Main]) and every [Start]
// launches `chronik start` on free 127.0.0.1 ports with its own data
// directory, waits until a Kafka ApiVersions request succeeds, and registers
// a cleanup that kills the process. The broker's stdout and stderr go to a
// file under t.TempDir() that is dumped into the test log when the test fails.
//
// Environment:
//
//	CHRONIK_TEST_TARGET=kfake   run against franz-go's in-process kfake
//	                            cluster instead of the chronik binary (to
//	                            develop tests before a broker feature exists,
//	                            or to tell a test bug from a broker bug).
//	                            Kill is then a clean close, not a crash.
//	CHRONIK_TEST_BINARY=path    use a prebuilt chronik binary instead of
//	                            building ./cmd/chronik.
//	CHRONIK_TEST_BUILDFLAGS=... extra go build flags for the binary, e.g.
//	                            -race to run the broker under the race
//	                            detector (a data race ends the process with
//	                            exit status 66 and a report in its log).
//
// Every other CHRONIK_* variable in the test's environment reaches the broker
// process, so a suite can be rerun under another configuration without code:
// CHRONIK_WAL_PROFILE=low go test ./tests/crash.
//
// Typical use:
//
//	func TestMain(m *testing.M) { testharness.Main(m) }
//
//	func TestX(t *testing.T) {
//		b := testharness.Start(t, testharness.Options{})
//		cl, _ := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
//		...
//		b.Kill()
//		b.Restart()
//	}
package testharness
