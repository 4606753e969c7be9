//go:build linux && amd64 && !purego

package cbc

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestPathsFollowCPUFlags: the decryption takes the fastest path the kernel says this CPU has (the flags
// of /proc/cpuinfo), so the tests of that path run on every machine that has it rather than passing
// without it.
func TestPathsFollowCPUFlags(t *testing.T) {
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Fatal(err)
	}
	var flags []string
	for line := range strings.Lines(string(info)) {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "flags" {
			flags = strings.Fields(value)
			break
		}
	}
	if len(flags) == 0 {
		t.Fatal("no flags line in /proc/cpuinfo")
	}
	has := func(names ...string) bool {
		for _, n := range names {
			if !slices.Contains(flags, n) {
				return false
			}
		}
		return true
	}
	if want := has("aes"); useAESNI != want {
		t.Errorf("useAESNI is %v with flags aes %v", useAESNI, want)
	}
	// VAES on YMM registers needs AVX2; x/sys/cpu reports VAES only with AVX-512 (see useVAES).
	if want := has("aes", "vaes", "avx2", "avx512f"); useVAES != want {
		t.Errorf("useVAES is %v with flags aes, vaes, avx2 and avx512f %v", useVAES, want)
	}
}
