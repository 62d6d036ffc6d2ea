//go:build !linux

package indexer

import (
	"errors"
	"os"
	"os/exec"
	"time"
)

// lowerPriority is implemented for Linux only, where brokers run.
func lowerPriority(nice int) error {
	if nice == 0 {
		return nil
	}
	return errors.New("setting the nice value of every thread needs Linux")
}

// processCPU is not measured here: builds are never paused.
func processCPU() time.Duration { return 0 }

func pauseProcess(*os.Process, bool) error {
	return errors.New("pausing a process needs Linux")
}

// maxRSS is not measured here.
func maxRSS(*os.ProcessState) int64 { return 0 }

// killWithParent has no portable form: a build child of a broker that
// crashed runs until its input ends, which fails the build.
func killWithParent(*exec.Cmd) {}
