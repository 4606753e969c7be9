package main

import (
	"strings"
	"testing"

	"github.com/rescalefs/rescalefs/remote"
)

func TestHealthLine(t *testing.T) {
	for _, c := range []struct {
		h    *remote.HealthSnapshot
		want []string
	}{
		{nil, nil},
		{&remote.HealthSnapshot{}, []string{"answering", "0 in progress"}},
		{&remote.HealthSnapshot{Calls: 3, Retrying: 2, Down: true},
			[]string{"NOT ANSWERING", "3 in progress", "2 waiting to retry"}},
	} {
		got := healthLine(c.h)
		if c.want == nil && got != "" {
			t.Errorf("no health: %q, want nothing", got)
		}
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("healthLine(%+v) = %q, want it to contain %q", c.h, got, w)
			}
		}
	}
}
