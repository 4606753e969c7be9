package main

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// runCompletion prints a completion script for bash, zsh or fish: the commands, and each command's
// flags as its --help lists them, so a command or flag added later completes without more work here.
func runCompletion(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(stdout, "Usage: rescalefs completion bash|zsh|fish\n\nPrints a shell completion script for rescalefs's commands and flags:\n  source <(rescalefs completion bash)          # bash, e.g. from ~/.bashrc\n  rescalefs completion zsh > \"${fpath[1]}/_rescalefs\"\n  rescalefs completion fish > ~/.config/fish/completions/rescalefs.fish")
		return exitOK
	}
	if len(args) != 1 {
		fmt.Fprintln(stderr, "rescalefs completion: want one of bash, zsh, fish (see rescalefs completion --help)")
		return exitUsage
	}
	cmds := completionCommands()
	switch args[0] {
	case "bash":
		writeBash(stdout, cmds)
	case "zsh":
		writeZsh(stdout, cmds)
	case "fish":
		writeFish(stdout, cmds)
	default:
		fmt.Fprintf(stderr, "rescalefs completion: unknown shell %q: want bash, zsh or fish\n", args[0])
		return exitUsage
	}
	return exitOK
}

type complFlag struct {
	Short, Long, Usage string
	Value              bool // takes a value (--name VALUE)
}

type complCommand struct {
	Name, Summary string
	Flags         []complFlag
}

// flagLine is a line of pflag's FlagUsages: "  -w, --watch[=true|false]   usage" or "      --poll duration   usage".
var flagLine = regexp.MustCompile(`^\s+(?:-(\w), )?--([a-z0-9][a-z0-9-]*)(\[=[^\]]*\])?(?: (\w+))?\s{2,}(.*)$`)

func completionCommands() []complCommand {
	var out []complCommand
	for _, c := range commands {
		cc := complCommand{Name: c.name, Summary: c.summary}
		if c.name != "completion" {
			var help bytes.Buffer
			c.run([]string{"--help"}, &help, io.Discard)
			for _, l := range strings.Split(help.String(), "\n") {
				m := flagLine.FindStringSubmatch(l)
				if m == nil {
					continue
				}
				cc.Flags = append(cc.Flags, complFlag{Short: m[1], Long: m[2], Value: m[4] != "" && m[3] == "", Usage: m[5]})
			}
		}
		out = append(out, cc)
	}
	return out
}

func names(cmds []complCommand) string {
	var n []string
	for _, c := range cmds {
		n = append(n, c.Name)
	}
	return strings.Join(n, " ")
}

func writeBash(w io.Writer, cmds []complCommand) {
	fmt.Fprintf(w, "# bash completion for rescalefs: source <(rescalefs completion bash)\n_rescalefs() {\n")
	fmt.Fprintf(w, "\tlocal cur=${COMP_WORDS[COMP_CWORD]} flags=\"\"\n")
	fmt.Fprintf(w, "\tif [[ $COMP_CWORD -eq 1 ]]; then\n\t\tCOMPREPLY=($(compgen -W %q -- \"$cur\"))\n\t\treturn\n\tfi\n", names(cmds))
	fmt.Fprintf(w, "\tcase ${COMP_WORDS[1]} in\n")
	for _, c := range cmds {
		var fl []string
		for _, f := range c.Flags {
			fl = append(fl, "--"+f.Long)
			if f.Short != "" {
				fl = append(fl, "-"+f.Short)
			}
		}
		if c.Name == "completion" {
			fmt.Fprintf(w, "\tcompletion)\n\t\tCOMPREPLY=($(compgen -W \"bash zsh fish\" -- \"$cur\"))\n\t\treturn ;;\n")
			continue
		}
		fmt.Fprintf(w, "\t%s) flags=%q ;;\n", c.Name, strings.Join(fl, " "))
	}
	fmt.Fprintf(w, "\tesac\n")
	fmt.Fprintf(w, "\tif [[ $cur == -* ]]; then\n\t\tCOMPREPLY=($(compgen -W \"$flags\" -- \"$cur\"))\n\telse\n\t\tCOMPREPLY=($(compgen -f -- \"$cur\"))\n\tfi\n}\n")
	fmt.Fprintf(w, "complete -o filenames -F _rescalefs rescalefs\n")
}

// zshQuote makes s safe inside a single-quoted _arguments spec: no quotes, brackets or colons.
func zshQuote(s string) string {
	return strings.NewReplacer("'", "", "[", "(", "]", ")", ":", " ", "\\", "").Replace(s)
}

func writeZsh(w io.Writer, cmds []complCommand) {
	fmt.Fprintf(w, "#compdef rescalefs\n# zsh completion for rescalefs: rescalefs completion zsh > \"${fpath[1]}/_rescalefs\"\n_rescalefs() {\n")
	fmt.Fprintf(w, "\tlocal -a cmds\n\tcmds=(\n")
	for _, c := range cmds {
		fmt.Fprintf(w, "\t\t'%s:%s'\n", c.Name, zshQuote(c.Summary))
	}
	fmt.Fprintf(w, "\t)\n\tif (( CURRENT == 2 )); then\n\t\t_describe 'command' cmds\n\t\treturn\n\tfi\n\tcase $words[2] in\n")
	for _, c := range cmds {
		if c.Name == "completion" {
			fmt.Fprintf(w, "\tcompletion) _arguments '2:shell:(bash zsh fish)' ;;\n")
			continue
		}
		fmt.Fprintf(w, "\t%s) _arguments", c.Name)
		for _, f := range c.Flags {
			spec := "--" + f.Long + "[" + zshQuote(f.Usage) + "]"
			if f.Value {
				spec += ":value:_files"
			}
			fmt.Fprintf(w, " '%s'", spec)
		}
		fmt.Fprintf(w, " '*:path:_files' ;;\n")
	}
	fmt.Fprintf(w, "\tesac\n}\n_rescalefs \"$@\"\n")
}

// fishQuote makes s a single-quoted fish string.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'"
}

func writeFish(w io.Writer, cmds []complCommand) {
	fmt.Fprintf(w, "# fish completion for rescalefs: rescalefs completion fish > ~/.config/fish/completions/rescalefs.fish\n")
	fmt.Fprintf(w, "complete -c rescalefs -f\n")
	for _, c := range cmds {
		fmt.Fprintf(w, "complete -c rescalefs -n __fish_use_subcommand -a %s -d %s\n", c.Name, fishQuote(c.Summary))
	}
	for _, c := range cmds {
		cond := fishQuote("__fish_seen_subcommand_from " + c.Name)
		if c.Name == "completion" {
			fmt.Fprintf(w, "complete -c rescalefs -n %s -a 'bash zsh fish'\n", cond)
			continue
		}
		fmt.Fprintf(w, "complete -c rescalefs -n %s -F\n", cond)
		for _, f := range c.Flags {
			line := "complete -c rescalefs -n " + cond + " -l " + f.Long
			if f.Short != "" {
				line += " -s " + f.Short
			}
			if f.Value {
				line += " -r"
			}
			fmt.Fprintf(w, "%s -d %s\n", line, fishQuote(f.Usage))
		}
	}
}
