package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// The job body of POST /api/v2/jobs/ and /api/v3/jobs/ (rescale-api.md, "Jobs: create, submit, DOE"),
// re-stated for the emulator, and the platform's tables that validate it: core types and analyses.

type jobSpecJSON struct {
	Name          string            `json:"name"`
	Description   string            `json:"description"`
	IsLowPriority bool              `json:"isLowPriority"`
	JobAnalyses   []jobAnalysisSpec `json:"jobanalyses"`
	ParamFile     *fileRefJSON      `json:"paramFile"`
	JobVariables  []any             `json:"jobvariables"`
}

type jobAnalysisSpec struct {
	Analysis                 analysisRefJSON   `json:"analysis"`
	Hardware                 hardwareSpec      `json:"hardware"`
	InputFiles               []inputFileJSON   `json:"inputFiles"`
	Command                  string            `json:"command"`
	PostProcessScript        *fileRefJSON      `json:"postProcessScript,omitempty"`
	PostProcessScriptCommand string            `json:"postProcessScriptCommand,omitempty"`
	EnvVars                  map[string]string `json:"envVars,omitempty"`
	UseRescaleLicense        bool              `json:"useRescaleLicense"`
	TemplateTasks            []templateTask    `json:"templateTasks,omitempty"`
}

type analysisRefJSON struct {
	Code    string `json:"code"`
	Version string `json:"version,omitempty"`
	Name    string `json:"name,omitempty"`
}

type hardwareSpec struct {
	CoreType     coreTypeField `json:"coreType"`
	CoresPerSlot int           `json:"coresPerSlot"`
	Slots        int           `json:"slots,omitempty"`
	Walltime     int           `json:"walltime,omitempty"` // hours [C]
}

// coreTypeField is a core type code: a string on v2, {"code": ...} on v3 [C]. It is answered as a string.
type coreTypeField string

func (c *coreTypeField) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var v struct {
			Code string `json:"code"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*c = coreTypeField(v.Code)
		return nil
	}
	if bytes.Equal(b, []byte("null")) {
		*c = ""
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*c = coreTypeField(s)
	return nil
}

type inputFileJSON struct {
	ID         string `json:"id"`
	Decompress *bool  `json:"decompress,omitempty"`
}

// decompress is true unless the body says false [C].
func (f inputFileJSON) decompress() bool { return f.Decompress == nil || *f.Decompress }

type fileRefJSON struct {
	ID string `json:"id"`
}

type templateTask struct {
	TemplateFile      fileRefJSON `json:"templateFile"`
	ProcessedFilename string      `json:"processedFilename"`
}

// coreTypeJSON is an item of GET /api/v2/coretypes/.
type coreTypeJSON struct {
	Code             string  `json:"code"`
	Name             string  `json:"name"`
	Cores            []int   `json:"cores"`
	Price            float64 `json:"price"`
	LowPriorityPrice float64 `json:"lowPriorityPrice"`
	WalltimeRequired bool    `json:"walltimeRequired"`
	Memory           int     `json:"memory"`  // MB per core
	Storage          int     `json:"storage"` // GB
	IsDeprecated     bool    `json:"isDeprecated"`
	DisplayOrder     int     `json:"displayOrder"`
}

// coreTypes is the emulated platform's hardware. Names and codes are Rescale's [C]; prices (per core
// hour), core counts and which ones require a walltime are the emulator's [I].
var coreTypes = []coreTypeJSON{
	{Code: "emerald", Name: "Emerald", Cores: []int{1, 2, 4, 8, 16, 18, 36}, Price: 0.08, LowPriorityPrice: 0.04, Memory: 3800, Storage: 32, DisplayOrder: 1},
	{Code: "standard-plus", Name: "Marble", Cores: []int{1, 2, 4, 8, 16, 32}, Price: 0.09, LowPriorityPrice: 0.045, Memory: 4000, Storage: 64, DisplayOrder: 2},
	{Code: "hpc-plus", Name: "Nickel", Cores: []int{1, 2, 4, 8, 16}, Price: 0.12, LowPriorityPrice: 0.06, Memory: 4000, Storage: 64, DisplayOrder: 3},
	{Code: "hpc-3", Name: "Onyx", Cores: []int{1, 2, 4, 9, 18, 36}, Price: 0.15, LowPriorityPrice: 0.075, WalltimeRequired: true, Memory: 5300, Storage: 128, DisplayOrder: 4},
	{Code: "hi-mem-hpc", Name: "Gold", Cores: []int{1, 2, 4, 8, 16}, Price: 0.2, LowPriorityPrice: 0.1, WalltimeRequired: true, Memory: 16000, Storage: 128, DisplayOrder: 5},
}

type analysisVersionJSON struct {
	Version          string   `json:"version"`
	VersionCode      string   `json:"versionCode"`
	AllowedCoreTypes []string `json:"allowedCoreTypes"`
}

type analysisItemJSON struct {
	Code     string                `json:"code"`
	Name     string                `json:"name"`
	Versions []analysisVersionJSON `json:"versions"`
}

func allCoreTypeCodes() []string {
	out := make([]string, 0, len(coreTypes))
	for _, c := range coreTypes {
		out = append(out, c.Code)
	}
	return out
}

// analyses is the emulated software catalogue [I]: "user_included" (the command runs as given) and a
// few named ones, every version allowed on every core type. The executor runs them all the same way.
var analyses = []analysisItemJSON{
	{Code: "user_included", Name: "Bring Your Own Software", Versions: []analysisVersionJSON{{Version: "0", VersionCode: "0", AllowedCoreTypes: allCoreTypeCodes()}}},
	{Code: "openfoam", Name: "OpenFOAM", Versions: []analysisVersionJSON{
		{Version: "v2306", VersionCode: "2306", AllowedCoreTypes: allCoreTypeCodes()},
		{Version: "v2212", VersionCode: "2212", AllowedCoreTypes: allCoreTypeCodes()}}},
	{Code: "python", Name: "Python", Versions: []analysisVersionJSON{{Version: "3.11", VersionCode: "3.11", AllowedCoreTypes: allCoreTypeCodes()}}},
}

func findCoreType(code string) (coreTypeJSON, bool) {
	for _, c := range coreTypes {
		if c.Code == code {
			return c, true
		}
	}
	return coreTypeJSON{}, false
}

func findAnalysis(code string) (analysisItemJSON, bool) {
	for _, a := range analyses {
		if a.Code == code {
			return a, true
		}
	}
	return analysisItemJSON{}, false
}

// fieldErrors is a Django-REST validation answer: field -> messages.
type fieldErrors map[string][]string

func (f fieldErrors) add(field, format string, args ...any) {
	f[field] = append(f[field], fmt.Sprintf(format, args...))
}

// validateLocked checks a create body as the platform would: a name, one analysis with a known code and
// version, a known core type with an allowed core count, a walltime where the core type requires one,
// and input files that exist. That a core type and a command are required is an inference [I]. It fills
// in the defaults (analysis user_included, the core type's smallest core count, one slot). e.mu must be
// held.
func (e *Emulator) validateLocked(in *jobSpecJSON) fieldErrors {
	errs := fieldErrors{}
	if strings.TrimSpace(in.Name) == "" {
		errs.add("name", "This field is required.")
	}
	if len(in.JobAnalyses) == 0 {
		errs.add("jobanalyses", "This field is required.")
		return errs
	}
	for i := range in.JobAnalyses {
		ja := &in.JobAnalyses[i]
		if ja.Analysis.Code == "" {
			ja.Analysis.Code = "user_included"
		}
		a, ok := findAnalysis(ja.Analysis.Code)
		if !ok {
			errs.add("analysis", "Unknown analysis code %q.", ja.Analysis.Code)
		} else if v := ja.Analysis.Version; v != "" && !slices.ContainsFunc(a.Versions, func(x analysisVersionJSON) bool { return x.VersionCode == v }) {
			errs.add("analysis", "Unknown version %q of analysis %q.", v, a.Code)
		}
		hw := &ja.Hardware
		ct, ok := findCoreType(string(hw.CoreType))
		switch {
		case hw.CoreType == "":
			errs.add("hardware", "A core type is required.")
		case !ok:
			errs.add("hardware", "Unknown core type %q.", string(hw.CoreType))
		default:
			if hw.CoresPerSlot <= 0 {
				hw.CoresPerSlot = ct.Cores[0]
			}
			if !slices.Contains(ct.Cores, hw.CoresPerSlot) {
				errs.add("hardware", "%d cores is not available on %s (%v).", hw.CoresPerSlot, ct.Name, ct.Cores)
			}
			if ct.WalltimeRequired && hw.Walltime <= 0 {
				errs.add("hardware", "A walltime is required for core type %s.", ct.Name)
			}
		}
		if hw.Walltime < 0 {
			errs.add("hardware", "Walltime must be a positive number of hours.")
		}
		if hw.Slots <= 0 {
			hw.Slots = 1
		}
		if strings.TrimSpace(ja.Command) == "" {
			errs.add("command", "This field is required.")
		}
		for _, f := range ja.InputFiles {
			if !e.libraryFileLocked(f.ID) {
				errs.add("inputFiles", "File %q does not exist.", f.ID)
			}
		}
		if p := ja.PostProcessScript; p != nil && p.ID != "" && !e.libraryFileLocked(p.ID) {
			errs.add("postProcessScript", "File %q does not exist.", p.ID)
		}
		for _, t := range ja.TemplateTasks {
			if !e.libraryFileLocked(t.TemplateFile.ID) {
				errs.add("templateTasks", "File %q does not exist.", t.TemplateFile.ID)
			}
		}
	}
	if p := in.ParamFile; p != nil && p.ID != "" && !e.libraryFileLocked(p.ID) {
		errs.add("paramFile", "File %q does not exist.", p.ID)
	}
	return errs
}

// libraryFileLocked says whether id is a live library file (an input a job may name).
func (e *Emulator) libraryFileLocked(id string) bool {
	f, ok := e.st.files[id]
	return ok && f.JobID == "" && !f.Deleted
}

func (e *Emulator) serveCoreTypes(w http.ResponseWriter, r *http.Request) {
	paginate(w, r, coreTypes, func(c coreTypeJSON) any { return c })
}

func (e *Emulator) serveAnalyses(w http.ResponseWriter, r *http.Request) {
	paginate(w, r, analyses, func(a analysisItemJSON) any { return a })
}
