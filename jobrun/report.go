package jobrun

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteSummary prints the table a matrix ends with: job, id, status, exit, duration, core hours.
func WriteSummary(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tID\tSTATUS\tEXIT\tDURATION\tCORE HOURS\tOUTCOME")
	for _, r := range results {
		status := r.Outcome.Status
		if status == "" {
			status = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%.2f\t%s\n", orDash(r.Name), orDash(r.JobID), status, r.Outcome.Code,
			r.Duration.Round(time.Second), r.CoreHours, r.Outcome.Why)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes JUnit XML: one test case per job, or per run for a job with several runs (DOE).
// A job that ran and failed is a failure carrying the lines that failed it and the tail of its log; a
// stopped job or a rescalefs failure is an error.
func WriteJUnit(w io.Writer, results []Result) error {
	suite := junitSuite{Name: "rescalefs"}
	var total time.Duration
	for _, r := range results {
		total += r.Duration
		if len(r.Runs) <= 1 {
			suite.Cases = append(suite.Cases, junitCaseOf(orDash(r.Name), r.JobID, r.Duration, r.Outcome))
			continue
		}
		for _, run := range r.Runs {
			var vars []string
			for _, v := range run.Variables {
				vars = append(vars, v.Name+"="+v.DisplayValue)
			}
			name := fmt.Sprintf("%s/run%s", orDash(r.Name), run.ID)
			if len(vars) > 0 {
				name += " (" + strings.Join(vars, ", ") + ")"
			}
			suite.Cases = append(suite.Cases, junitCaseOf(name, r.JobID, run.Duration, run.Outcome))
		}
	}
	for _, c := range suite.Cases {
		suite.Tests++
		if c.Failure != nil {
			suite.Failures++
		}
		if c.Error != nil {
			suite.Errors++
		}
	}
	suite.Time = seconds(total)
	doc := junitSuites{Tests: suite.Tests, Failures: suite.Failures, Errors: suite.Errors, Suites: []junitSuite{suite}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func junitCaseOf(name, jobID string, d time.Duration, o Outcome) junitCase {
	c := junitCase{Name: name, Classname: "rescalefs.job." + orDash(jobID), Time: seconds(d)}
	body := ""
	if len(o.Failures) > 0 {
		body += strings.Join(o.Failures, "\n") + "\n\n"
	}
	if len(o.Tail) > 0 {
		body += "--- last lines of process_output.log ---\n" + strings.Join(o.Tail, "\n") + "\n"
	}
	p := &junitProblem{Message: o.Why, Type: fmt.Sprintf("exit %d", o.Code), Text: body}
	switch o.Code {
	case ExitOK:
	case ExitJobFailed:
		c.Failure = p
	default:
		c.Error = p
	}
	return c
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }
