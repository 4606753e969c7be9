// Package units parses and prints byte sizes the way people type them on a command line.
package units

import (
	"fmt"
	"strconv"
	"strings"
)

// sizeUnits maps the suffixes Parse accepts to their multipliers: binary (KiB) and decimal (KB)
// units, and the bare letters that dd, fio and rclone users type, which mean binary units.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1000,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1000 * 1000,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1000 * 1000 * 1000,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1000 * 1000 * 1000 * 1000,
}

// Parse parses a byte size such as "512MiB", "25MiB", "1.5GiB", "100MB", "4k" or "1048576".
// Binary suffixes (KiB, MiB, GiB, TiB, and bare K, M, G, T) are powers of 1024, decimal ones (KB, MB, GB,
// TB) powers of 1000; case is ignored. Negative sizes are refused.
func Parse(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') && t[i-1] != '.' {
		i--
	}
	num, unit := strings.TrimSpace(t[:i]), strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if !ok || num == "" {
		return 0, fmt.Errorf("invalid size %q (want a number with an optional unit such as KiB, MiB, GiB or MB)", s)
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		if n < 0 || (mult > 1 && n > (1<<62)/mult) {
			return 0, fmt.Errorf("invalid size %q: out of range", s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return int64(f * float64(mult)), nil
}

// Exact renders n with the largest binary unit that divides it ("8MiB", else plain bytes), so that
// Parse(Exact(n)) == n: for flag values that are printed and parsed again.
func Exact(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.mult && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// Human renders n bytes with the largest binary unit that keeps it readable ("512MiB", "1.5GiB").
func Human(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f, u := float64(n), 0
	for f >= 1024 && u < len(units)-1 {
		f /= 1024
		u++
	}
	num := strings.TrimRight(strings.TrimRight(strconv.FormatFloat(f, 'f', 2, 64), "0"), ".")
	return num + units[u]
}
