package units

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"4096", 4096, true}, {"8MiB", 8 << 20, true}, {"25M", 25 << 20, true}, {"25mb", 25e6, true},
		{"1.5GiB", 3 << 29, true}, {"512 MiB", 512 << 20, true}, {"0", 0, true}, {"1T", 1 << 40, true},
		{"4k", 4096, true}, {"", 0, false}, {"-1M", 0, false}, {"lots", 0, false}, {"1e30T", 0, false},
		{"NaN", 0, false}, {"5 parsecs", 0, false},
	} {
		got, err := Parse(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("Parse(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestExactRoundTrips(t *testing.T) {
	for _, n := range []int64{0, 1, 1000, 1000000, 8 << 20, 3 << 29, 1 << 40, 1<<30 + 1} {
		if got, err := Parse(Exact(n)); err != nil || got != n {
			t.Errorf("Parse(Exact(%d)) via %q = %d, %v", n, Exact(n), got, err)
		}
	}
}

func TestHuman(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{{0, "0B"}, {1023, "1023B"}, {1536, "1.5KiB"}, {512 << 20, "512MiB"}, {3 << 29, "1.5GiB"}} {
		if got := Human(tc.n); got != tc.want {
			t.Errorf("Human(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
