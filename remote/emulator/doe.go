package emulator

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// DOE (rescale-api.md, "Jobs: create, submit, DOE"): a parameter table with one run per data row, and
// templates filled with each run's values.

// parseParamCSV reads a parameter table: the header names the variables, each data row is one run.
func parseParamCSV(b []byte) ([][]runVariable, error) {
	r := csv.NewReader(bytes.NewReader(b))
	r.TrimLeadingSpace = true
	recs, err := r.ReadAll()
	if err != nil {
		return nil, err
	}
	if len(recs) < 2 {
		return nil, fmt.Errorf("want a header row and at least one data row")
	}
	head := recs[0]
	var rows [][]runVariable
	for _, rec := range recs[1:] {
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		var vars []runVariable
		for i, name := range head {
			name = strings.TrimSpace(name)
			if i >= len(rec) || name == "" {
				continue
			}
			vars = append(vars, newRunVariable(name, strings.TrimSpace(rec[i])))
		}
		rows = append(rows, vars)
	}
	return rows, nil
}

// newRunVariable keeps numbers as numbers in `value`, as the platform's runs list does [I].
func newRunVariable(name, s string) runVariable {
	var v any = s
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		v = f
	}
	return runVariable{Name: name, Value: v, DisplayValue: s}
}

// placeholder matches ${name} and ${name?string("0.00")} (FreeMarker, as Rescale's templates use) [C].
var placeholder = regexp.MustCompile(`\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\?string\("([^"]*)"\))?\s*\}`)

// fillTemplate replaces placeholders with the run's values; unknown names are left as they are.
func fillTemplate(tmpl string, vars []runVariable) string {
	return placeholder.ReplaceAllStringFunc(tmpl, func(m string) string {
		sub := placeholder.FindStringSubmatch(m)
		for _, v := range vars {
			if v.Name != sub[1] {
				continue
			}
			if sub[2] == "" {
				return v.DisplayValue
			}
			return formatNumber(v.DisplayValue, sub[2])
		}
		return m
	})
}

// formatNumber applies a DecimalFormat pattern's number of decimals ("0.00" -> 2, "0" -> 0) [I]: the
// grouping and other pattern features are not emulated.
func formatNumber(s, pattern string) string {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return s
	}
	decimals := 0
	if _, frac, ok := strings.Cut(pattern, "."); ok {
		decimals = strings.Count(frac, "0") + strings.Count(frac, "#")
	}
	return strconv.FormatFloat(f, 'f', decimals, 64)
}

// outputVariables reads the post-processing step's name<TAB>value lines [C].
func outputVariables(lines []string) []runVariable {
	var out []runVariable
	for _, l := range lines {
		name, value, ok := strings.Cut(l, "\t")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			continue
		}
		out = append(out, newRunVariable(name, strings.TrimSpace(value)))
	}
	return out
}

// mergeVariables adds outputs to a run's inputs; an output of the same name replaces the input.
func mergeVariables(in, out []runVariable) []runVariable {
	res := append([]runVariable(nil), in...)
	for _, o := range out {
		replaced := false
		for i := range res {
			if res[i].Name == o.Name {
				res[i], replaced = o, true
			}
		}
		if !replaced {
			res = append(res, o)
		}
	}
	return res
}
