package upload

import (
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// TestUploadLostCreateAnswerLeavesNoUpload: when the storage makes a multipart upload but the answer to
// the create is lost (cut: the SDK retries it; stalled past the idle timeout: the engine starts over
// with a new key), the file is published and no upload is left in progress on the storage.
func TestUploadLostCreateAnswerLeavesNoUpload(t *testing.T) {
	for _, fault := range []emulator.Fault{emulator.FaultCut, emulator.FaultStall} {
		t.Run(fault.String(), func(t *testing.T) {
			p := newPlatform(t, false)
			o := p.engineOpts(t.TempDir())
			o.SmallThreshold = -1
			// A stalled answer is given up on after the idle timeout: a short one keeps the test short.
			o.S3.HTTPClient = remote.NewPolicyHTTPClient(remote.Policy{IdleTimeout: 300 * time.Millisecond})
			h := startEngine(t, o)
			p.e.FailNext(emulator.EndpointS3CreateMultipart, 1, fault)
			data := randomData(21, 2*testPart+7)
			id := enqueue(t, h.eng, "lost-create.bin", data)
			p.checkPublished(h.wait(id), "lost-create.bin", data)
			if ups := p.e.MultipartUploads(); len(ups) != 0 {
				t.Errorf("uploads left in progress on the storage: %+v", ups)
			}
			for endpoint, want := range map[string]int64{emulator.EndpointS3CreateMultipart: 2, emulator.EndpointS3Abort: 1} {
				if n := p.requests(endpoint); n != want {
					t.Errorf("%s: %d requests, want %d", endpoint, n, want)
				}
			}
		})
	}
}
