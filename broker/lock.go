package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDataDir takes an exclusive flock on <dir>/LOCK so two brokers never
// share a data directory. The kernel drops the lock when the process dies,
// so a SIGKILLed broker restarts without manual cleanup.
func lockDataDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("broker: create data dir %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("broker: open data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("broker: data dir %s is in use by another Chronik process; stop it or choose another --data-dir", dir)
		}
		return nil, fmt.Errorf("broker: lock data dir %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
