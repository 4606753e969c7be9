// Command rescalefs mounts the Rescale cloud HPC platform as a directory. This package is wiring only:
// flags, credentials, signals, mount and unmount, and the emulator and demo commands; the semantics live
// in fs, cache and remote.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// Exit codes, one per failure class, as gocryptfs does: scripts can tell a typo from a platform problem.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed: rejected key, unreachable URL, mount error
	exitUsage   = 2 // the command line is wrong: unknown command or flag, missing argument
)

// version and revision are set at link time for releases:
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.revision=$(git rev-parse HEAD)" ./cmd/rescalefs
//
// Otherwise both come from the build info: the module version (v1.2.3 for `go install ...@v1.2.3`,
// "(devel)" for a build in a checkout) and the VCS revision Go stamps into a build in a git checkout.
var version, revision = "", ""

type command struct {
	name    string
	usage   string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

// commands is filled in init so the table can refer to helpers that print it.
var commands []command

func init() {
	commands = append(commands,
		command{"mount", "mount [flags] MOUNTPOINT", "mount the platform and serve it until unmounted", runMount},
		command{"unmount", "unmount MOUNTPOINT", "unmount a rescalefs mount", runUnmount},
		command{"status", "status [--watch] [MOUNTPOINT]", "show uploads, open files and cache use of a mount", runStatus},
		command{"demo", "demo [MOUNTPOINT]", "mount a built-in emulated platform with sample jobs (no account needed)", runDemo},
		command{"emulator", "emulator [flags]", "serve the emulated Rescale platform on loopback, for tests and trials", runEmulator},
		command{"version", "version", "print the version", runVersion},
		command{"completion", "completion bash|zsh|fish", "print a shell completion script", runCompletion},
	)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		printUsage(stdout)
		return exitOK
	case "--version":
		return runVersion(nil, stdout, stderr)
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	if isMountHelperCall(args) {
		return runMountHelper(args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "rescalefs: unknown command %q (see rescalefs --help)\n", args[0])
	return exitUsage
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "rescalefs mounts the Rescale platform as a directory.")
	fmt.Fprintln(w, "\nUsage:")
	for _, c := range commands {
		fmt.Fprintf(w, "  rescalefs %-26s %s\n", c.usage, c.summary)
	}
	fmt.Fprintf(w, "  rescalefs %-26s %s\n", "PROFILE MOUNTPOINT -o OPTS", "the same as mount, as mount -t fuse.rescalefs and /etc/fstab run it")
	fmt.Fprintln(w, "\nRun 'rescalefs COMMAND --help' for a command's flags.")
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(stdout, "Usage: rescalefs version")
		return exitOK
	}
	if len(args) > 0 {
		fmt.Fprintln(stderr, "rescalefs version: takes no arguments")
		return exitUsage
	}
	fmt.Fprintln(stdout, "rescalefs", versionString())
	return exitOK
}

func versionString() string {
	info, _ := debug.ReadBuildInfo()
	return formatVersion(version, revision, info)
}

// formatVersion is "VERSION (revision REV[, modified], GOVERSION)": the link-time values win over the
// build info. Without a revision it says why one may be missing rather than printing a bare "(devel)".
func formatVersion(linkVersion, linkRevision string, info *debug.BuildInfo) string {
	v, rev, goVersion, modified := linkVersion, linkRevision, "", false
	if info != nil {
		goVersion = info.GoVersion
		if v == "" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision" && rev == "":
				rev = s.Value
			case s.Key == "vcs.modified" && linkRevision == "":
				modified = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	var parts []string
	switch {
	case rev != "" && modified:
		parts = append(parts, "revision "+rev+", modified")
	case rev != "":
		parts = append(parts, "revision "+rev)
	case v == "(devel)":
		parts = append(parts, "no VCS revision: built outside a git clone, from a linked worktree or with -buildvcs=false")
	}
	if goVersion != "" {
		parts = append(parts, goVersion)
	}
	if len(parts) == 0 {
		return v
	}
	return v + " (" + strings.Join(parts, ", ") + ")"
}
