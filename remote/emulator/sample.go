package emulator

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"strings"
	"time"
)

// SampleOptions configures Seed.
type SampleOptions struct {
	Seed          uint64        // 0 = 1; the same seed gives the same jobs, ids, contents and checksums
	LargeFileSize int64         // the large result of one completed job; 0 = 512 MiB
	ManyFiles     int           // files of the many-files job; 0 = 10,000
	RunningFor    time.Duration // how long the running jobs keep running from now; 0 = 3 minutes
	// Running, when set, replaces the running jobs: one per entry, completing that long from now.
	Running []time.Duration
}

// Seed adds the deterministic sample set: completed OpenFOAM-like jobs with time-step folders, a job
// with a large binary result, one with ManyFiles files, names with spaces and non-ASCII characters, a
// failed job, jobs still running (one of which fails), and a few library files. Large contents are
// generated objects: seeding costs one checksum pass over them, no encryption and no storage.
// Seeding twice (or again after a restart with the same DataDir) adds nothing.
func (e *Emulator) Seed(o SampleOptions) error {
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.LargeFileSize == 0 {
		o.LargeFileSize = 512 << 20
	}
	if o.ManyFiles == 0 {
		o.ManyFiles = 10000
	}
	if o.RunningFor == 0 {
		o.RunningFor = 3 * time.Minute
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0xc0ffee))
	id := func() string {
		b := make([]byte, 5)
		for i := range b {
			b[i] = idAlphabet[rng.IntN(len(idAlphabet))]
		}
		return string(b)
	}
	now := e.now()
	day := 24 * time.Hour
	ids := make([]string, 8)
	for i := range ids {
		ids[i] = id()
	}
	e.mu.RLock()
	_, seeded := e.st.jobs[ids[0]]
	e.mu.RUnlock()
	if seeded {
		return nil
	}
	jobs := []JobSpec{
		{ID: ids[0], Name: "airFoil2D steady", Created: now.Add(-6 * day), Files: openFOAMCase(rng, "airFoil2D", 5)},
		{ID: ids[1], Name: "wing CFD – large results", Created: now.Add(-3 * day), Files: append(openFOAMCase(rng, "wing", 3),
			FileSpec{RelativePath: "results/wing_fields.h5", Size: o.LargeFileSize, Seed: int64(o.Seed)*1000 + 1},
			FileSpec{RelativePath: "results/surface_mesh.bin", Size: max(1, o.LargeFileSize/16), Seed: int64(o.Seed)*1000 + 2},
			FileSpec{RelativePath: "results/probes.dat", Size: 3<<20 + 7, Seed: int64(o.Seed)*1000 + 3})},
		{ID: ids[2], Name: "parameter sweep (10k files)", Analysis: "user_included", Created: now.Add(-2 * day),
			Files: manyFiles(o.ManyFiles - 1)},
		{ID: ids[3], Name: "Crash test – Überprüfung 日本語 run", Analysis: "LS-DYNA", Created: now.Add(-1 * day), Files: []FileSpec{
			textFile("résultats finaux/Geschwindigkeit Ü.csv", csvText(rng, 300)),
			textFile("日本語 フォルダ/データ 1.txt", csvText(rng, 40)),
			textFile("d3plot notes.txt", "binary d3plot files follow\n"),
			{RelativePath: "d3plot", Size: 2<<20 + 333, Seed: int64(o.Seed)*1000 + 4},
			{RelativePath: "d3plot01", Size: 2<<20 + 1, Seed: int64(o.Seed)*1000 + 5},
		}},
		{ID: ids[4], Name: "diverging run", Created: now.Add(-5 * day), Fail: true,
			Files: append(openFOAMCase(rng, "pitzDaily", 2), textFile(processOutputLog, processLog("diverging run", ids[4], true, 200)))},
	}
	running := []JobSpec{
		{ID: ids[5], Name: "transient channel flow", RunFor: o.RunningFor, Files: openFOAMCase(rng, "channel395", 6)},
		{ID: ids[6], Name: "long LES run", RunFor: 2 * o.RunningFor, Files: openFOAMCase(rng, "LES", 4)},
		{ID: ids[7], Name: "failing running job", RunFor: o.RunningFor + o.RunningFor/2, Fail: true, Files: openFOAMCase(rng, "bad mesh", 2)},
	}
	if o.Running != nil {
		running = running[:0]
		for i, d := range o.Running {
			running = append(running, JobSpec{ID: id(), Name: fmt.Sprintf("running case %d", i+1), RunFor: d,
				Files: openFOAMCase(rng, fmt.Sprintf("case%d", i+1), 4)})
		}
	}
	jobs = append(jobs, running...)
	for _, j := range jobs {
		if _, err := e.AddJob(j); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	lib := []struct{ name, content string }{
		{"airfoil.msh", csvText(rng, 500)},
		{"run.sh", "#!/bin/sh\nsimpleFoam -parallel > log.simpleFoam 2>&1\n"},
		{"Eingabe ünïcode.dat", csvText(rng, 20)},
	}
	for _, l := range lib {
		if _, err := e.AddLibraryFile(l.name, strings.NewReader(l.content), int64(len(l.content))); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	return nil
}

func textFile(rel, content string) FileSpec {
	return FileSpec{RelativePath: rel, Size: int64(len(content)), Content: strings.NewReader(content)}
}

// openFOAMCase is a solver-like output tree: system and constant dictionaries, initial and time-step
// field folders, a solver log.
func openFOAMCase(rng *rand.Rand, dir string, steps int) []FileSpec {
	var fs []FileSpec
	for _, d := range []string{"controlDict", "fvSchemes", "fvSolution"} {
		fs = append(fs, textFile(dir+"/system/"+d, foamDict(d, rng)))
	}
	fs = append(fs, textFile(dir+"/constant/transportProperties", foamDict("transportProperties", rng)))
	fields := []string{"U", "p", "nut", "nuTilda"}
	times := []string{"0"}
	for i := 1; i <= steps; i++ {
		times = append(times, trimFloat(float64(i)*0.1))
	}
	for _, t := range times {
		for _, f := range fields {
			fs = append(fs, textFile(dir+"/"+t+"/"+f, foamField(f, rng, 50+rng.IntN(400))))
		}
	}
	fs = append(fs, textFile(dir+"/log.simpleFoam", solverLog(rng, 200)))
	return fs
}

func trimFloat(f float64) string {
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", f), "0"), ".")
}

const foamHeader = `/*--------------------------------*- C++ -*----------------------------------*\
  =========                 |
  \\      /  F ield         | OpenFOAM: The Open Source CFD Toolbox
   \\    /   O peration     | Version:  v2312
    \\  /    A nd           | Website:  www.openfoam.com
     \\/     M anipulation  |
\*---------------------------------------------------------------------------*/
`

func foamDict(name string, rng *rand.Rand) string {
	var b strings.Builder
	b.WriteString(foamHeader)
	fmt.Fprintf(&b, "FoamFile\n{\n    version     2.0;\n    format      ascii;\n    class       dictionary;\n    object      %s;\n}\n\n", name)
	for i := range 10 + rng.IntN(20) {
		fmt.Fprintf(&b, "entry%-12d %g;\n", i, rng.Float64()*100)
	}
	return b.String()
}

func foamField(name string, rng *rand.Rand, n int) string {
	var b strings.Builder
	b.WriteString(foamHeader)
	class := "volScalarField"
	if name == "U" {
		class = "volVectorField"
	}
	fmt.Fprintf(&b, "FoamFile\n{\n    version     2.0;\n    format      ascii;\n    class       %s;\n    object      %s;\n}\n\n", class, name)
	fmt.Fprintf(&b, "internalField   nonuniform List<%s>\n%d\n(\n", map[bool]string{true: "vector", false: "scalar"}[name == "U"], n)
	for range n {
		if name == "U" {
			fmt.Fprintf(&b, "(%.6g %.6g %.6g)\n", rng.NormFloat64()*25, rng.NormFloat64()*3, 0.0)
		} else {
			fmt.Fprintf(&b, "%.6g\n", rng.ExpFloat64())
		}
	}
	b.WriteString(")\n;\n")
	return b.String()
}

func solverLog(rng *rand.Rand, iters int) string {
	var b strings.Builder
	for i := 1; i <= iters; i++ {
		fmt.Fprintf(&b, "Time = %d\n\nsmoothSolver:  Solving for Ux, Initial residual = %.6g, Final residual = %.6g, No Iterations %d\n",
			i, rng.Float64()/float64(i), rng.Float64()/float64(10*i), 1+rng.IntN(5))
		fmt.Fprintf(&b, "GAMG:  Solving for p, Initial residual = %.6g, Final residual = %.6g, No Iterations %d\n", rng.Float64()/float64(i), rng.Float64()/float64(100*i), 2+rng.IntN(9))
		fmt.Fprintf(&b, "ExecutionTime = %.2f s  ClockTime = %d s\n\n", float64(i)*0.37, i/2)
	}
	b.WriteString("End\n")
	return b.String()
}

func csvText(rng *rand.Rand, rows int) string {
	var b strings.Builder
	b.WriteString("t,x,y,z,value\n")
	for i := range rows {
		fmt.Fprintf(&b, "%d,%.4f,%.4f,%.4f,%.6g\n", i, rng.Float64(), rng.Float64(), rng.Float64(), rng.NormFloat64())
	}
	return b.String()
}

// processLog is the stdout of a run: what process_output.log holds (lines of roughly 60 bytes).
func processLog(name, jobID string, fail bool, lines int) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Rescale emulator: job %s (%s)\nStarting run 1 on 4 cores\n", jobID, name)
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&b, "[%06d] Time = %-8s Courant Number mean: %.4f max: %.4f\n", i, trimFloat(float64(i)*0.001), 0.1+float64(i%17)/100, 0.5+float64(i%29)/50)
	}
	if fail {
		b.WriteString("--> FOAM FATAL ERROR: Maximum number of iterations exceeded\nRun 1 exited with status 1\n")
	} else {
		b.WriteString("End\nRun 1 exited with status 0\n")
	}
	return b.String()
}

// manyFiles is a sweep's output: n small generated files in folders of 100.
func manyFiles(n int) []FileSpec {
	fs := make([]FileSpec, 0, n)
	for i := range n {
		fs = append(fs, FileSpec{RelativePath: fmt.Sprintf("sweep/design_%03d/probe_%03d.dat", i/100, i%100),
			Size: int64(64 + (i*7919)%4000), Seed: int64(1_000_000 + i)})
	}
	return fs
}

// defaultOutputs are the outputs of a job created and submitted through the API.
func defaultOutputs(jobID, name string) []FileSpec {
	return append(caseOutputs(jobID), textFile(processOutputLog, processLog(name, jobID, false, 400)))
}

// caseOutputs is a small solver case, deterministic in seed (any string, "" included). It has no
// process_output.log: AddJob adds one that names the job's real id and outcome.
func caseOutputs(seed string) []FileSpec {
	h := fnv.New64a()
	io.WriteString(h, seed)
	return openFOAMCase(rand.New(rand.NewPCG(h.Sum64(), 0)), "case", 2)
}
