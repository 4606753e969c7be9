package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rescalefs/rescalefs/remote"
)

// coldPairs (issue 11) measures the cold sequential cp against aria2c in n alternated pairs: each pair
// runs aria2c through /contents/ and a cp out of a fresh mount on an empty cache, the first of the two
// alternating from pair to pair. On a shared two-core machine one run of each can differ by a third
// from the next minute's; the ratio within a pair, taken minutes apart from the others, is what holds.
// The row's MiB/s is the median cp and its ratio to aria2c the median of the pairs' ratios; its note
// has every pair's. dir is the
// file's folder inside a mount.
func coldPairs(c config, work, url, key string, dir string, f remote.File, n int) (row, error) {
	out := filepath.Join(work, "pairs")
	if err := os.Mkdir(out, 0o700); err != nil {
		return row{}, err
	}
	defer os.RemoveAll(out)
	var cps, arias, ratios, cpus []float64
	for i := range n {
		var cp, aria row
		runCP := func() error {
			cache := filepath.Join(out, fmt.Sprintf("cache%d", i))
			mnt := filepath.Join(out, fmt.Sprintf("mnt%d", i))
			stop, pid, err := startMountIn(c, work, cache, mnt, url, key)
			if err != nil {
				return err
			}
			defer stop()
			defer os.RemoveAll(cache)
			before := cpuSeconds(pid)
			if cp, err = timedCopy(filepath.Join(mnt, dir, f.Name), filepath.Join(out, "cp.bin")); err != nil {
				return err
			}
			cpus = append(cpus, (cpuSeconds(pid)-before)/(float64(cp.bytes)/(1<<30)))
			return nil
		}
		runAria := func() error {
			r, ok, err := aria2c(context.Background(), url, key, f, out)
			if err == nil && !ok {
				err = fmt.Errorf("aria2c is not installed")
			}
			aria = r
			return err
		}
		first, second := runAria, runCP
		if i%2 == 1 {
			first, second = runCP, runAria
		}
		if err := first(); err != nil {
			return row{}, err
		}
		if err := second(); err != nil {
			return row{}, err
		}
		cps, arias = append(cps, cp.seconds), append(arias, aria.mibps())
		ratios = append(ratios, cp.mibps()/aria.mibps())
	}
	var each []string
	for _, r := range ratios {
		each = append(each, fmt.Sprintf("%.2f", r))
	}
	return row{
		name:     fmt.Sprintf("mount: cold cp, %d pairs with aria2c", n),
		seconds:  median(cps),
		bytes:    f.DecryptedSize,
		vsAria2c: median(ratios),
		note: fmt.Sprintf("cp/aria2c per pair %s: median %.2fx; aria2c median %.1f MiB/s; mount CPU s/GiB median %.2f",
			strings.Join(each, " "), median(ratios), median(arias), median(cpus)),
	}, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
