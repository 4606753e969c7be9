package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
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
