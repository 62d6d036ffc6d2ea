//go:build !linux

package indexer

import (
	"errors"
	"os/exec"
)

// lowerPriority is implemented for Linux only, where brokers run.
func lowerPriority(nice int) error {
	if nice == 0 {
		return nil
	}
	return errors.New("setting the nice value of every thread needs Linux")
}

// killWithParent has no portable form: a build child of a broker that
// crashed runs until its input ends, which fails the build.
func killWithParent(*exec.Cmd) {}
