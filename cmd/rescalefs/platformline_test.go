package main

import (
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote"
)

func TestPlatformLine(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		h    *remote.HealthSnapshot
		want []string
	}{
		{nil, nil},
		{&remote.HealthSnapshot{}, []string{"answering", "last answer never", "0 calls"}},
		{&remote.HealthSnapshot{LastAnswer: now.Add(-90 * time.Second), Calls: 3, Retrying: 2, Down: true},
			[]string{"NOT ANSWERING", "last answer 1m30s ago", "3 calls in progress", "2 waiting to retry"}},
	} {
		got := platformLine(c.h, now)
		if c.want == nil && got != "" {
			t.Errorf("no health: %q, want nothing", got)
		}
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("platformLine(%+v) = %q, want it to contain %q", c.h, got, w)
			}
		}
	}
}
