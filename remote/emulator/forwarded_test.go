package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// Behind a TLS-terminating proxy, absolute `next` links use the scheme and host the client used
// (X-Forwarded-Proto, X-Forwarded-Host; the first hop's when a chain lists several); without the
// headers they name the emulator itself.
func TestNextLinkHonoursForwardedHeaders(t *testing.T) {
	h := newHarness(t, Options{})
	specs := make([]FileSpec, 3)
	for i := range specs {
		specs[i] = FileSpec{RelativePath: fmt.Sprintf("f%d.dat", i), Size: 10}
	}
	j := mustAddJob(t, h.e, JobSpec{Name: "paged", Files: specs})
	path := "/api/v2/jobs/" + j.ID + "/files/?page_size=1"
	for _, c := range []struct {
		hdr  []string
		want string
	}{
		{nil, h.srv.URL + "/api/v2/jobs/"},
		{[]string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "rescale.example.com"}, "https://rescale.example.com/api/v2/jobs/"},
		{[]string{"X-Forwarded-Proto", "https, http", "X-Forwarded-Host", "outer.example.com, inner"}, "https://outer.example.com/api/v2/jobs/"},
		{[]string{"X-Forwarded-Proto", "gopher"}, h.srv.URL + "/api/v2/jobs/"},
		{[]string{"X-Forwarded-Host", "evil.example.com/path"}, h.srv.URL + "/api/v2/jobs/"},
	} {
		resp, b := h.do(http.MethodGet, path, nil, c.hdr...)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%v: %d %s", c.hdr, resp.StatusCode, b)
		}
		var p pageOf[fileJSON]
		if err := json.Unmarshal(b, &p); err != nil || p.Next == nil {
			t.Fatalf("%v: %v, next %v", c.hdr, err, p.Next)
		}
		if !strings.HasPrefix(*p.Next, c.want) {
			t.Errorf("headers %q: next %q, want it to start with %q", c.hdr, *p.Next, c.want)
		}
	}
}
