package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveCredentials(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "apiconfig")
	if err := os.WriteFile(cfg, []byte(`# Rescale profiles
[default]
apikey = filekey
apibaseurl = https://eu.rescale.com

[kr]
apikey = "krkey"
APIBASEURL = https://kr.rescale.com/
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	noEnv := env(nil)
	withEnv := env(map[string]string{"RESCALE_API_KEY": "envkey", "RESCALE_API_URL": "http://127.0.0.1:9000"})

	for _, tc := range []struct {
		name                string
		in                  credentialInputs
		wantKey, wantURL    string
		wantSource, wantErr string
	}{
		{"flags win", credentialInputs{FlagKey: "flagkey", FlagURL: "https://itar.rescale.com", Getenv: withEnv, ConfigPath: cfg},
			"flagkey", "https://itar.rescale.com", "flag", ""},
		{"env over file", credentialInputs{Getenv: withEnv, ConfigPath: cfg}, "envkey", "http://127.0.0.1:9000", "environment", ""},
		{"file default profile", credentialInputs{Getenv: noEnv, ConfigPath: cfg}, "filekey", "https://eu.rescale.com", "config file", ""},
		{"explicit profile over env", credentialInputs{Profile: "kr", Getenv: withEnv, ConfigPath: cfg}, "krkey", "https://kr.rescale.com", "config file", ""},
		{"flag key, file URL", credentialInputs{FlagKey: "flagkey2", Getenv: noEnv, ConfigPath: cfg}, "flagkey2", "https://eu.rescale.com", "flag", ""},
		{"default URL", credentialInputs{FlagKey: "flagkey3", Getenv: noEnv}, "flagkey3", defaultAPIURL, "flag", ""},
		{"no key anywhere", credentialInputs{Getenv: noEnv, ConfigPath: filepath.Join(dir, "none")}, "", "", "", "no API key"},
		{"missing profile", credentialInputs{Profile: "jp", Getenv: noEnv, ConfigPath: cfg}, "", "", "", "no profile [jp]"},
		{"profile without file", credentialInputs{Profile: "jp", Getenv: noEnv, ConfigPath: filepath.Join(dir, "none")}, "", "", "", "does not exist"},
		{"plain http off loopback", credentialInputs{FlagKey: "k", FlagURL: "http://platform.rescale.com", Getenv: noEnv}, "", "", "", "plain http"},
		{"not a URL", credentialInputs{FlagKey: "k", FlagURL: "platform.rescale.com", Getenv: noEnv}, "", "", "", "not an http(s) URL"},
		{"password in a plain-http URL is redacted", credentialInputs{FlagKey: "k", FlagURL: "http://me:hunter2@platform.rescale.com", Getenv: noEnv}, "", "", "", "http://me:xxxxx@platform.rescale.com"},
		{"unparsable URL is not echoed", credentialInputs{FlagKey: "k", FlagURL: "https://me:hunter2@[::1", Getenv: noEnv}, "", "", "", "the API URL is not a URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveCredentials(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("err shows the URL's password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Key != tc.wantKey || got.URL != tc.wantURL || got.KeySource != tc.wantSource {
				t.Fatalf("got key %q url %q source %q", got.Key, got.URL, got.KeySource)
			}
			if strings.Contains(got.String(), got.Key) {
				t.Fatal("String() shows the key")
			}
		})
	}
}

func TestReadINIErrorHidesLine(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "apiconfig")
	if err := os.WriteFile(cfg, []byte("apikey secretvalue\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := readINI(cfg)
	if err == nil || strings.Contains(err.Error(), "secretvalue") {
		t.Fatalf("err = %v: want an error that does not quote the line", err)
	}
}
