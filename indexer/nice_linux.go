package indexer

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// lowerPriority raises the nice value of every thread of this process to
// nice. Linux keeps a nice value per thread, and a new thread starts with
// its creator's, so once every thread has it the threads the Go runtime
// starts later have it too. A thread started while the list is walked
// is caught by the next pass. A thread already at nice or lower priority
// is left alone (raising priority back needs privileges).
func lowerPriority(nice int) error {
	if nice == 0 {
		return nil
	}
	done := map[int]bool{}
	for {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		found := false
		for _, e := range tasks {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || done[tid] {
				continue
			}
			found = true
			done[tid] = true
			// The raw system call returns 20 - nice.
			cur, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
			if errors.Is(err, syscall.ESRCH) {
				continue // the thread exited
			}
			if err != nil {
				return err
			}
			if 20-cur >= nice {
				continue
			}
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil && !errors.Is(err, syscall.ESRCH) {
				return err
			}
		}
		if !found {
			return nil
		}
	}
}

// processCPU returns the CPU time this process has used (every thread,
// user and system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pauseProcess stops (SIGSTOP) or continues (SIGCONT) p.
func pauseProcess(p *os.Process, stop bool) error {
	if stop {
		return p.Signal(syscall.SIGSTOP)
	}
	return p.Signal(syscall.SIGCONT)
}

// maxRSS returns the peak resident memory of an exited child, in bytes.
func maxRSS(ps *os.ProcessState) int64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss << 10 // Linux reports KiB
	}
	return 0
}

// killWithParent has the kernel kill the child when this process dies,
// so a crashed broker leaves no build running. (The signal follows the
// thread that started the child; the Go runtime does not end threads
// that goroutines have not locked, so it follows the process.)
func killWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
