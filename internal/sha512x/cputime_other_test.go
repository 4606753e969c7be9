//go:build !linux

package sha512x

import (
	"testing"
	"time"
)

// threadCPU is not measured off Linux: the benchmarks report wall time only.
func threadCPU(*testing.B) time.Duration { return 0 }
