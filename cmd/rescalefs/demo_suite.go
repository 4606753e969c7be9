package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

// The tiny regression suite the demo and `rescalefs emulator --regression-suite DIR` ship: a software
// build, its tests with expected outputs, a compare script that prints PASS or FAILURE per test and
// exits 0 (as most do: hence --fail-on), an incremental delta to unpack over the build, and a broken
// delta to see a failure. README's "Jobs" section walks through it.

const echowareV1 = `#!/bin/bash
# echoware: the "software" under test. It upper-cases a test input.
if [ "$1" = --version ]; then echo "echoware 1.0"; exit 0; fi
tr a-z A-Z < "$1"
`

const echowareV11 = `#!/bin/bash
# echoware 1.1: the incremental build; same behaviour, new version.
if [ "$1" = --version ]; then echo "echoware 1.1"; exit 0; fi
tr a-z A-Z < "$1"
`

const echowareBroken = `#!/bin/bash
# echoware 1.2: a regression: it forgot to upper-case.
if [ "$1" = --version ]; then echo "echoware 1.2"; exit 0; fi
cat "$1"
`

const runTestsScript = `#!/bin/bash
# Runs every test of tests/ with the build's bin/echoware; results go to results/.
mkdir -p results
bin/echoware --version | tee results/version.txt
for t in tests/*.in; do
  n=$(basename "$t" .in)
  bin/echoware "$t" > "results/$n.out"
  echo "ran $n"
done
`

const compareScript = `#!/bin/bash
# Compares results/ with the expected outputs. Like most compare scripts it prints PASS or FAILURE
# per test and exits 0 either way; the summary line is a DOE output variable (name<TAB>value).
pass=0; total=0
for e in tests/*.expected; do
  n=$(basename "$e" .expected)
  total=$((total+1))
  if cmp -s "$e" "results/$n.out"; then
    echo "PASS $n"; pass=$((pass+1))
  else
    echo "FAILURE $n: results/$n.out differs from $e"
  fi
done
echo "passed $pass of $total"
printf 'passed\t%s\n' "$pass"
`

// regressionSuite returns the suite's files by name.
func regressionSuite() (map[string][]byte, error) {
	files := map[string][]byte{"compare.sh": []byte(compareScript)}
	for name, content := range map[string]map[string]string{
		"build.tar.gz": {"bin/echoware": echowareV1},
		"tests.tar.gz": {
			"run_tests.sh":         runTestsScript,
			"tests/hello.in":       "hello rescale\n",
			"tests/hello.expected": "HELLO RESCALE\n",
			"tests/world.in":       "regression world\n",
			"tests/world.expected": "REGRESSION WORLD\n",
		},
		"delta.tar.gz":        {"bin/echoware": echowareV11},
		"delta-broken.tar.gz": {"bin/echoware": echowareBroken},
	} {
		b, err := tarGz(content)
		if err != nil {
			return nil, fmt.Errorf("regression suite %s: %w", name, err)
		}
		files[name] = b
	}
	return files, nil
}

// tarGz packs files (path -> content) with fixed dates, so the archives' bytes (and sha512) never change.
func tarGz(files map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	when := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range names {
		mode := int64(0o644)
		if filepath.Ext(n) == ".sh" || filepath.Base(filepath.Dir(n)) == "bin" {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: mode, Size: int64(len(files[n])), ModTime: when,
			Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeRegressionSuite writes the suite's files into dir (created if missing).
func writeRegressionSuite(dir string) error {
	files, err := regressionSuite()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, b := range files {
		mode := os.FileMode(0o644)
		if filepath.Ext(name) == ".sh" {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, mode); err != nil {
			return err
		}
	}
	return nil
}

// seedRegressionSuite puts the suite's files into the emulator's library, as a vendor would upload
// them once and reuse them by name.
func seedRegressionSuite(emu *emulator.Emulator) error {
	files, err := regressionSuite()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := emu.AddLibraryFile(n, bytes.NewReader(files[n]), int64(len(files[n]))); err != nil {
			return err
		}
	}
	return nil
}
