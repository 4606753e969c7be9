package main

import "github.com/rescalefs/rescalefs/internal/units"

// sizeValue is a pflag.Value for byte sizes written as people write them: 4096, 8MiB, 25M, 1.5GiB.
type sizeValue int64

func newSizeValue(def int64, p *int64) *sizeValue {
	*p = def
	return (*sizeValue)(p)
}

func (s *sizeValue) Set(v string) error {
	n, err := units.Parse(v)
	if err != nil {
		return err
	}
	*s = sizeValue(n)
	return nil
}

func (s *sizeValue) Type() string { return "size" }

// String must parse back to the same value: a background mount passes its flags on to its child this way.
func (s *sizeValue) String() string { return units.Exact(int64(*s)) }
