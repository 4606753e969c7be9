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
	has := func(names ...string) bool {
		for _, n := range names {
			if !cpuHas(t, n) {
				return false
			}
		}
		return true
	}
	if want := has("aes"); useAESNI != want {
		t.Errorf("useAESNI is %v with flags aes %v", useAESNI, want)
	}
	// VAES on YMM registers needs AVX2, and nothing of AVX-512.
	if want := has("aes", "vaes", "avx2"); useVAES != want {
		t.Errorf("useVAES is %v with flags aes, vaes and avx2 %v", useVAES, want)
	}
}

// TestVAESWithoutAVX512: a CPU with VAES and AVX2 but no AVX-512 (AMD Zen 3, Intel Alder Lake) takes the
// VAES path. x/sys/cpu reports no VAES there (HasAVX512VAES needs AVX-512), so useVAES took from it
// left those CPUs on the 8-block AES-NI path.
func TestVAESWithoutAVX512(t *testing.T) {
	const vaes = 1 << 9
	for _, tc := range []struct {
		name      string
		aes, avx2 bool
		leaf7ECX  uint32
		want      bool
	}{
		{"VAES and AVX2, no AVX-512", true, true, vaes, true},
		{"VAES with other leaf-7 bits", true, true, vaes | 1<<8 | 1<<10, true},
		{"no VAES", true, true, 1<<8 | 1<<10, false},
		{"VAES without AVX2 (or no OS support for YMM)", true, false, vaes, false},
		{"VAES without AES-NI", false, true, vaes, false},
	} {
		if got := vaesUsable(tc.aes, tc.avx2, tc.leaf7ECX); got != tc.want {
			t.Errorf("%s: vaesUsable = %v, want %v", tc.name, got, tc.want)
		}
	}
	// On this machine the CPUID read agrees with the kernel's flags (TestPathsFollowCPUFlags checks the
	// result), so the bit is read from the right leaf, subleaf and register.
	if cpuHas(t, "vaes") != (cpuidLeaf7ECX()&vaes != 0) {
		t.Errorf("CPUID leaf 7 ECX %#x: VAES bit disagrees with /proc/cpuinfo", cpuidLeaf7ECX())
	}
}

// cpuHas reports whether the flags line of /proc/cpuinfo (the kernel's view of this CPU) names flag.
func cpuHas(t *testing.T, flag string) bool {
	t.Helper()
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(info)) {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "flags" {
			return slices.Contains(strings.Fields(value), flag)
		}
	}
	t.Fatal("no flags line in /proc/cpuinfo")
	return false
}
