package jobrun

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Directives are the rescale-cli job-script directives of one script (rescale-api.md, "rescale-cli job
// scripts"): `#RESCALE_X=value` lines, first occurrence wins, quotes stripped. Zero values mean "not
// given"; Set says which were.
type Directives struct {
	Name            string
	Analysis        string
	AnalysisVersion string
	CoreType        string // a code or a display name
	Cores           int
	Walltime        int // hours
	Env             map[string]string
	EnvOrder        []string // Env's keys in script order
	ExistingFiles   []string // file ids attached before the script
	RescaleLicense  bool
	LowPriority     bool

	Set map[string]bool // directive names seen: "NAME", "CORES", "LOW_PRIORITY", ...
}

// ParseDirectives reads the directives of a script. A directive with a bad value, or written in the
// space-separated form rescale-cli does not read (`#RESCALE_CORES emerald`), is an error naming its line.
func ParseDirectives(script []byte) (Directives, error) {
	d := Directives{Env: map[string]string{}, Set: map[string]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(script))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "#USE_RESCALE_LICENSE" || strings.HasPrefix(line, "#USE_RESCALE_LICENSE=") {
			d.RescaleLicense = true
			continue
		}
		if !strings.HasPrefix(line, "#RESCALE_") {
			continue
		}
		key, val, ok := strings.Cut(strings.TrimPrefix(line, "#RESCALE_"), "=")
		if !ok {
			return d, fmt.Errorf("line %d: %q: a directive is written #RESCALE_NAME=value", n, line)
		}
		key, val = strings.TrimSpace(key), unquote(strings.TrimSpace(val))
		// Set is keyed by the whole key, so each ENV_ variable is its own directive.
		if d.Set[key] {
			continue // first occurrence wins
		}
		d.Set[key] = true
		bad := func(want string) error {
			return fmt.Errorf("line %d: #RESCALE_%s=%s: want %s", n, key, val, want)
		}
		switch {
		case key == "NAME":
			d.Name = val
		case key == "ANALYSIS":
			d.Analysis = val
		case key == "ANALYSIS_VERSION":
			d.AnalysisVersion = val
		case key == "CORE_TYPE":
			d.CoreType = val
		case key == "CORES":
			c, err := strconv.Atoi(val)
			if err != nil || c <= 0 {
				return d, bad("a positive number of cores")
			}
			d.Cores = c
		case key == "WALLTIME":
			w, err := strconv.Atoi(val)
			if err != nil || w <= 0 {
				return d, bad("a positive whole number of hours")
			}
			d.Walltime = w
		case strings.HasPrefix(key, "ENV_"):
			name := strings.TrimPrefix(key, "ENV_")
			if name == "" {
				return d, bad("a variable name after ENV_")
			}
			d.Env[name] = val
			d.EnvOrder = append(d.EnvOrder, name)
		case key == "EXISTING_FILES":
			for _, id := range strings.Split(val, ",") {
				if id = strings.TrimSpace(id); id != "" {
					d.ExistingFiles = append(d.ExistingFiles, id)
				}
			}
		case key == "LOW_PRIORITY":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return d, bad("true or false")
			}
			d.LowPriority = b
		default:
			return d, fmt.Errorf("line %d: unknown directive #RESCALE_%s", n, key)
		}
	}
	return d, sc.Err()
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1]
	}
	return s
}
