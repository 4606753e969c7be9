package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

// executorFlags are the emulator's flags for running submitted jobs locally.
type executorFlags struct {
	run          bool
	workDir      string
	queueTime    time.Duration
	walltimeUnit time.Duration
	suiteDir     string
}

func addExecutorFlags(fl *pflag.FlagSet) *executorFlags {
	x := &executorFlags{}
	fl.BoolVar(&x.run, "run-jobs", false, "run submitted jobs on this machine, as the user running the emulator: inputs unpacked, command and post-processing under bash, process_output.log, outputs published")
	fl.StringVar(&x.workDir, "work-dir", "", "with --run-jobs: where the runs' work directories go (default: DATA/work, or a temporary folder)")
	d := emulator.DefaultLifecycle()
	fl.DurationVar(&x.queueTime, "queue-time", d.Pending+d.Queued+d.Started+d.Validated, "time a submitted job spends before Executing (Pending, Queued, Started, Validated)")
	fl.DurationVar(&x.walltimeUnit, "walltime-unit", time.Hour, "with --run-jobs: how long one hour of walltime lasts (shorten it to try walltime limits)")
	fl.StringVar(&x.suiteDir, "regression-suite", "", "write the demo's tiny regression suite (build, tests, compare script, deltas) into DIR, to try submit on")
	return x
}

// lifecycle applies --queue-time: the phases before Executing share it equally.
func (x *executorFlags) lifecycle(fl *pflag.FlagSet, lc emulator.Lifecycle) emulator.Lifecycle {
	if !fl.Changed("queue-time") || x.queueTime < 0 {
		return lc
	}
	q := x.queueTime / 4
	lc.Pending, lc.Queued, lc.Started, lc.Validated = q, q, q, x.queueTime-3*q
	if lc.Stopping == 0 {
		lc.Stopping = time.Nanosecond // keeps the Lifecycle non-zero: zero means the default
	}
	return lc
}

// start runs the executor (--run-jobs) and writes the regression suite (--regression-suite), before the
// emulator serves.
func (x *executorFlags) start(emu *emulator.Emulator, dataDir string) error {
	if x.run {
		dir := x.workDir
		if dir == "" && dataDir != "" {
			dir = filepath.Join(dataDir, "work")
		}
		if err := emu.StartExecutor(dir, x.walltimeUnit); err != nil {
			return err
		}
	}
	if x.suiteDir != "" {
		if err := writeRegressionSuite(x.suiteDir); err != nil {
			return fmt.Errorf("--regression-suite: %w", err)
		}
	}
	return nil
}
