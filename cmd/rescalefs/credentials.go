package main

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// defaultAPIURL is where Rescale's own tools point when nothing else is configured.
const defaultAPIURL = "https://platform.rescale.com"

// credentials are what a command needs to talk to the platform. Key must never be printed or logged;
// String hides it so a stray %v cannot leak it.
type credentials struct {
	Key       string
	URL       string
	KeySource string // "flag", "environment" or "config file", for messages and the flag warning
	// Warnings are about the config file: unknown keys (by name, never value), a key readable by others.
	Warnings []string
}

func (c credentials) String() string { return fmt.Sprintf("{url %s, key from %s}", c.URL, c.KeySource) }

// credentialInputs are the places a key and URL may come from, in the order Rescale's own tools use:
// flags, then RESCALE_API_KEY / RESCALE_API_URL, then the profile in ~/.config/rescale/apiconfig.
// An explicit --profile makes the config file win over the environment, since the user asked for it.
type credentialInputs struct {
	FlagKey, FlagURL string
	Profile          string // "" = default, not explicitly asked for
	Getenv           func(string) string
	ConfigPath       string // the apiconfig file; "" = no file
}

func resolveCredentials(in credentialInputs) (credentials, error) {
	profile := in.Profile
	if profile == "" {
		profile = "default"
	}
	var fileKey, fileURL string
	var warnings []string
	if in.ConfigPath != "" {
		sections, err := readINI(in.ConfigPath)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if in.Profile != "" {
				return credentials{}, fmt.Errorf("profile %q asked for, but %s does not exist", in.Profile, in.ConfigPath)
			}
		case err != nil:
			return credentials{}, err
		default:
			sec, ok := sections[profile]
			if !ok && in.Profile != "" {
				return credentials{}, fmt.Errorf("no profile [%s] in %s", in.Profile, in.ConfigPath)
			}
			fileKey, fileURL = sec["apikey"], sec["apibaseurl"]
			warnings = unknownConfigKeys(in.ConfigPath, profile, sec)
		}
	}
	envKey, envURL := in.Getenv("RESCALE_API_KEY"), in.Getenv("RESCALE_API_URL")

	// The order of the candidates is the precedence; the first non-empty one wins.
	type source struct{ key, url, name string }
	sources := []source{{in.FlagKey, in.FlagURL, "flag"}, {envKey, envURL, "environment"}, {fileKey, fileURL, "config file"}}
	if in.Profile != "" {
		sources[1], sources[2] = sources[2], sources[1]
	}
	var c credentials
	for _, s := range sources {
		if c.Key == "" && s.key != "" {
			c.Key, c.KeySource = strings.TrimSpace(s.key), s.name
		}
		if c.URL == "" && s.url != "" {
			c.URL = strings.TrimSpace(s.url)
		}
	}
	if c.KeySource == "config file" {
		if w := exposedConfig(in.ConfigPath); w != "" {
			warnings = append(warnings, w)
		}
	}
	c.Warnings = warnings
	if c.Key == "" {
		return credentials{}, errors.New("no API key: pass --api-key, set RESCALE_API_KEY, or add apikey to ~/.config/rescale/apiconfig")
	}
	if c.URL == "" {
		c.URL = defaultAPIURL
	}
	u, err := checkAPIURL(c.URL)
	if err != nil {
		return credentials{}, err
	}
	c.URL = u
	return c, nil
}

// configKeys are the keys of an apiconfig profile that Rescale's tools read.
var configKeys = map[string]bool{"apikey": true, "apibaseurl": true}

// unknownConfigKeys warns about keys of the profile nothing reads, by name only (a value may be a key):
// an `apiurl =` line is otherwise silently ignored and the mount goes to the default platform.
func unknownConfigKeys(path, profile string, sec map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(sec)) {
		if configKeys[k] {
			continue
		}
		hint := ""
		if strings.Contains(k, "url") || strings.Contains(k, "host") {
			hint = " (the platform URL's key is apibaseurl)"
		}
		out = append(out, fmt.Sprintf("%s: [%s] has an unknown key %q, ignored%s", path, profile, k, hint))
	}
	return out
}

// exposedConfig warns, as ssh does for private keys, when the file the key came from can be read by
// other users.
func exposedConfig(path string) string {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return ""
	}
	return fmt.Sprintf("%s holds your API key and is readable by others (mode %04o): chmod 600 %s", path, fi.Mode().Perm(), path)
}

// checkAPIURL accepts https anywhere and plain http only on loopback (the emulator), so the key is never
// sent in clear text over a network.
//
// Messages show the URL with any password in it redacted, and an unparsable URL not at all.
func checkAPIURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("the API URL is not a URL such as %s", defaultAPIURL)
	}
	if u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("API URL %q is not an http(s) URL such as %s", u.Redacted(), defaultAPIURL)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return "", fmt.Errorf("API URL %q uses plain http to a non-loopback host; use https", u.Redacted())
	}
	return strings.TrimRight(u.String(), "/"), nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// defaultConfigPath is where Rescale's tools keep profiles.
func defaultConfigPath() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".config", "rescale", "apiconfig")
}

// readINI reads the small INI dialect of apiconfig: [section], key = value, comments with # or ;.
// Keys are case-insensitive; values may be quoted.
func readINI(path string) (map[string]map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sections := map[string]map[string]string{}
	var cur map[string]string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			name := strings.TrimSpace(line[1 : len(line)-1])
			if sections[name] == nil {
				sections[name] = map[string]string{}
			}
			cur = sections[name]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || cur == nil {
				// Say where, never what: the line may hold a key.
				return nil, fmt.Errorf("%s:%d: not a [section] or key = value line", path, n)
			}
			cur[strings.ToLower(strings.TrimSpace(k))] = strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return sections, nil
}
