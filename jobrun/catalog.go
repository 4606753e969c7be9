package jobrun

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/rescalefs/rescalefs/remote"
)

// Catalog is the platform's hardware and software, fetched once per submit.
type Catalog struct {
	CoreTypes []remote.CoreType
	Analyses  []remote.Analysis
}

// UsageError is a request refused before anything is created: exit code 2.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error { return &UsageError{fmt.Sprintf(format, args...)} }

// CoreType finds a core type by code or display name (case-insensitive, as Rescale's clients do [C]);
// an unknown one is a UsageError listing the closest valid ones.
func (c Catalog) CoreType(s string) (remote.CoreType, error) {
	for _, ct := range c.CoreTypes {
		if strings.EqualFold(ct.Code, s) || strings.EqualFold(ct.Name, s) {
			return ct, nil
		}
	}
	var cands []string
	for _, ct := range c.CoreTypes {
		if !ct.IsDeprecated {
			cands = append(cands, ct.Code+" ("+ct.Name+")")
		}
	}
	return remote.CoreType{}, usagef("unknown core type %q; closest: %s", s, strings.Join(closest(s, cands, 3), ", "))
}

// Analysis finds an analysis by code (or name) and checks the version (a version or a versionCode;
// "" = the latest). It returns the code and the versionCode to send.
func (c Catalog) Analysis(code, version string) (string, string, error) {
	for _, a := range c.Analyses {
		if !strings.EqualFold(a.Code, code) && !strings.EqualFold(a.Name, code) {
			continue
		}
		if version == "" {
			return a.Code, "", nil
		}
		var known []string
		for _, v := range a.Versions {
			if v.VersionCode == version || v.Version == version {
				return a.Code, v.VersionCode, nil
			}
			known = append(known, v.VersionCode)
		}
		return "", "", usagef("analysis %s has no version %q; versions: %s", a.Code, version, strings.Join(known, ", "))
	}
	var cands []string
	for _, a := range c.Analyses {
		cands = append(cands, a.Code)
	}
	return "", "", usagef("unknown analysis %q; closest: %s", code, strings.Join(closest(code, cands, 3), ", "))
}

// Estimate is the most a job can cost: price per core hour x cores x walltime hours, over every slot.
func Estimate(ct remote.CoreType, cores, slots, walltime int, lowPriority bool) float64 {
	price := ct.Price
	if lowPriority && ct.LowPriorityPrice > 0 {
		price = ct.LowPriorityPrice
	}
	return price * float64(cores) * float64(max(1, slots)) * float64(walltime)
}

// checkHardware refuses what the platform would refuse, before anything is created or uploaded.
func checkHardware(ct remote.CoreType, cores, walltime int) error {
	if ct.WalltimeRequired && walltime <= 0 {
		return usagef("core type %s (%s) requires a walltime: pass --walltime HOURS or #RESCALE_WALLTIME=", ct.Name, ct.Code)
	}
	if len(ct.Cores) > 0 && !slices.Contains(ct.Cores, cores) {
		return usagef("core type %s has no %d-core option; choose one of %v", ct.Name, cores, ct.Cores)
	}
	return nil
}

// closest returns up to n candidates nearest to s by edit distance (case-insensitive).
func closest(s string, cands []string, n int) []string {
	type scored struct {
		c string
		d int
	}
	var sc []scored
	for _, c := range cands {
		// "code (Name)": the nearer of the two counts.
		code, name, _ := strings.Cut(strings.TrimSuffix(c, ")"), " (")
		d := levenshtein(strings.ToLower(s), strings.ToLower(code))
		if name != "" {
			d = min(d, levenshtein(strings.ToLower(s), strings.ToLower(name)))
		}
		sc = append(sc, scored{c, d})
	}
	sort.SliceStable(sc, func(i, j int) bool { return sc[i].d < sc[j].d })
	var out []string
	for i := 0; i < len(sc) && i < n; i++ {
		out = append(out, sc[i].c)
	}
	return out
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
