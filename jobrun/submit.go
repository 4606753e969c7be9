package jobrun

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/rescalefs/rescalefs/remote"
)

// Template is a DOE template: a file filled with each run's values into Processed.
type Template struct {
	Src       Input
	Processed string
}

// JobRequest is one job to create, from flags or from a script with directives (flags win).
type JobRequest struct {
	Name            string
	Analysis        string // code or name; "" = user_included
	AnalysisVersion string
	CoreType        string // code or display name
	Cores           int    // per slot; 0 = the core type's smallest
	Slots           int    // DOE runs at once; 0 = 1
	Walltime        int    // hours; 0 = none (refused where the core type requires one)
	Inputs          []Input
	ExistingFiles   []string // file ids (#RESCALE_EXISTING_FILES), before the inputs
	Command         string
	PostCommand     string
	Env             map[string]string
	LowPriority     bool
	RescaleLicense  bool
	ParamFile       *Input
	Templates       []Template
}

// RunIDMarker is how --run-id marks a job: in its name, the one field every job list shows, so a
// retried CI step finds the jobs of its first attempt with one listing [I].
func RunIDMarker(runID string) string { return " [run-id " + runID + "]" }

// Planned is a request checked against the catalog, ready to create.
type Planned struct {
	req      JobRequest
	name     string // with the run-id marker
	coreType remote.CoreType
	analysis string
	version  string
	cores    int
}

// Submitter creates and submits jobs.
type Submitter struct {
	C       *remote.Client
	Inputs  *Inputs
	Out     *Printer
	RunID   string
	MaxCost float64 // 0 = no limit
}

// Submitted is a job created (or found by --run-id) for a request.
type Submitted struct {
	JobID    string
	Name     string
	Attached bool // found by --run-id: not created again
}

// Plan checks every request against the platform's catalog before anything is created or uploaded:
// core type, analysis, cores, walltime and --max-cost. A refusal is a *UsageError.
func (s *Submitter) Plan(ctx context.Context, reqs []JobRequest) ([]Planned, error) {
	cts, err := s.C.CoreTypes(ctx)
	if err != nil {
		return nil, fmt.Errorf("core types: %w", err)
	}
	as, err := s.C.Analyses(ctx)
	if err != nil {
		return nil, fmt.Errorf("analyses: %w", err)
	}
	cat := Catalog{CoreTypes: cts, Analyses: as}
	var out []Planned
	names := map[string]bool{}
	for _, r := range reqs {
		p := Planned{req: r, name: r.Name}
		if s.RunID != "" {
			p.name += RunIDMarker(s.RunID)
		}
		if names[p.name] && s.RunID != "" {
			return nil, usagef("two jobs are named %q: --run-id tells jobs apart by name", r.Name)
		}
		names[p.name] = true
		if strings.TrimSpace(r.Command) == "" {
			return nil, usagef("job %s: no command: pass --command or a SCRIPT", r.Name)
		}
		analysis := r.Analysis
		if analysis == "" {
			analysis = remote.UserIncludedAnalysis
		}
		if p.analysis, p.version, err = cat.Analysis(analysis, r.AnalysisVersion); err != nil {
			return nil, prefixUsage("job "+r.Name, err)
		}
		if r.CoreType == "" {
			return nil, usagef("job %s: no core type: pass --core-type or #RESCALE_CORE_TYPE=", r.Name)
		}
		if p.coreType, err = cat.CoreType(r.CoreType); err != nil {
			return nil, prefixUsage("job "+r.Name, err)
		}
		p.cores = r.Cores
		if p.cores <= 0 && len(p.coreType.Cores) > 0 {
			p.cores = p.coreType.Cores[0]
		}
		if err := checkHardware(p.coreType, p.cores, r.Walltime); err != nil {
			return nil, prefixUsage("job "+r.Name, err)
		}
		if s.MaxCost > 0 {
			if r.Walltime <= 0 {
				return nil, usagef("job %s: --max-cost needs a walltime to estimate the cost", r.Name)
			}
			est := Estimate(p.coreType, p.cores, r.Slots, r.Walltime, r.LowPriority)
			if est > s.MaxCost {
				return nil, usagef("job %s: estimated cost %.2f (%s %.3f/core-hour x %d cores x %d slot(s) x %d h) is above --max-cost %.2f",
					r.Name, est, p.coreType.Code, p.coreType.Price, p.cores, max(1, r.Slots), r.Walltime, s.MaxCost)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

func prefixUsage(prefix string, err error) error {
	var ue *UsageError
	if errors.As(err, &ue) {
		return usagef("%s: %s", prefix, ue.Msg)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// Submit creates and submits the Planned jobs (those --run-id finds are attached instead). Inputs are
// resolved first, once each. Jobs are created concurrently; the client paces them within the
// job-submission limit. It returns what was submitted even when some failed.
func (s *Submitter) Submit(ctx context.Context, plans []Planned) ([]Submitted, error) {
	existing := map[string]remote.Job{}
	if s.RunID != "" {
		jobs, err := s.C.ListJobs(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("jobs of --run-id %s: %w", s.RunID, err)
		}
		for _, j := range jobs {
			if strings.HasSuffix(j.Name, RunIDMarker(s.RunID)) {
				if prev, ok := existing[j.Name]; !ok || j.DateInserted.After(prev.DateInserted.Time) {
					existing[j.Name] = j
				}
			}
		}
	}
	out := make([]Submitted, len(plans))
	var todo []int
	for i, p := range plans {
		if j, ok := existing[p.name]; ok {
			out[i] = Submitted{JobID: j.ID, Name: p.name, Attached: true}
			s.Out.Linef("job %s (%s): found by --run-id %s: attaching, not creating it again", j.ID, p.name, s.RunID)
			// A first attempt may have died between create and submit: submitting again is harmless
			// (the platform refuses a second submission).
			if j.JobStatus.Content == remote.StatusPending || j.JobStatus.Content == "" {
				if err := s.C.SubmitJob(ctx, j.ID); err != nil && !errors.Is(err, remote.ErrBadRequest) {
					return out, fmt.Errorf("job %s: submit: %w", j.ID, err)
				}
			}
			continue
		}
		todo = append(todo, i)
	}
	specs := make([]remote.JobSpec, len(plans))
	for _, i := range todo {
		spec, err := s.spec(ctx, plans[i])
		if err != nil {
			return out, err
		}
		specs[i] = spec
	}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards errs
	var errs []error
	sem := make(chan struct{}, 4)
	for _, i := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			j, err := s.C.CreateJob(ctx, specs[i])
			if err == nil {
				out[i] = Submitted{JobID: j.ID, Name: plans[i].name}
				err = s.C.SubmitJob(ctx, j.ID)
				if err != nil {
					err = fmt.Errorf("job %s: submit: %w", j.ID, err)
				} else {
					s.Out.Linef("job %s (%s): submitted", j.ID, plans[i].name)
				}
			} else {
				err = fmt.Errorf("job %s: create: %w", plans[i].name, err)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// spec builds the job body, resolving (and uploading) its inputs.
func (s *Submitter) spec(ctx context.Context, p Planned) (remote.JobSpec, error) {
	r := p.req
	ja := remote.JobAnalysis{
		Analysis: remote.AnalysisRef{Code: p.analysis, Version: p.version},
		Hardware: remote.Hardware{CoreType: remote.CoreTypeCode(p.coreType.Code), CoresPerSlot: p.cores,
			Slots: max(1, r.Slots), Walltime: r.Walltime},
		Command: r.Command, PostProcessScriptCommand: r.PostCommand, EnvVars: r.Env,
		UseRescaleLicense: r.RescaleLicense, InputFiles: []remote.InputFile{},
	}
	for _, id := range r.ExistingFiles {
		ja.InputFiles = append(ja.InputFiles, remote.InputFile{ID: id})
	}
	for _, in := range r.Inputs {
		f, err := s.resolve(ctx, in)
		if err != nil {
			return remote.JobSpec{}, err
		}
		dec := in.Decompress
		ja.InputFiles = append(ja.InputFiles, remote.InputFile{ID: f.ID, Decompress: &dec})
	}
	for _, t := range r.Templates {
		f, err := s.resolve(ctx, t.Src)
		if err != nil {
			return remote.JobSpec{}, err
		}
		ja.TemplateTasks = append(ja.TemplateTasks, remote.TemplateTask{TemplateFile: remote.FileRef{ID: f.ID},
			ProcessedFilename: t.Processed})
	}
	spec := remote.JobSpec{Name: p.name, IsLowPriority: r.LowPriority, JobAnalyses: []remote.JobAnalysis{ja},
		JobVariables: []any{}}
	if r.ParamFile != nil {
		f, err := s.resolve(ctx, *r.ParamFile)
		if err != nil {
			return remote.JobSpec{}, err
		}
		spec.ParamFile = &remote.FileRef{ID: f.ID}
	}
	return spec, nil
}

func (s *Submitter) resolve(ctx context.Context, in Input) (remote.File, error) {
	r, err := s.Inputs.Resolve(ctx, in)
	if err != nil {
		return remote.File{}, err
	}
	switch {
	case r.Reused:
		s.Out.Linef("input %s: reused library file %s (same sha512; nothing sent)", in.Raw, r.File.ID)
	case r.Sent:
		s.Out.Linef("input %s: sent as file %s (%d bytes)", in.Raw, r.File.ID, r.File.DecryptedSize)
	}
	// Say it once: later jobs naming the same input find it resolved.
	in2 := r
	in2.Reused, in2.Sent = false, false
	s.Inputs.mu.Lock()
	s.Inputs.done[in.key()] = in2
	s.Inputs.mu.Unlock()
	return r.File, nil
}
