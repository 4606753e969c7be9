package remote

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

// TestS3CreateMultipartLeavesNoOrphan: a CreateMultipartUpload that the storage carried out but whose
// answer was lost (its body stalled past the idle timeout, or cut) leaves no upload behind, whether
// the SDK's retry then made a second one (the call succeeds: only that one is left) or every answer
// was lost (the call fails: none is left). A clean create costs no listing.
// (The emulator runs the create before the fault takes the answer; a stall before the headers
// happens before it runs.)
func TestS3CreateMultipartLeavesNoOrphan(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fault   emulator.Fault
		n       int  // answers lost in a row
		wantErr bool // the call fails: no attempt got its answer
		creates int64
		lists   int64 // ListMultipartUploads requests
		aborts  int64
	}{
		{name: "clean", creates: 1},
		// The SDK does not retry a body that stalled: the call fails.
		{name: "stalled answer", fault: emulator.FaultStall, n: 1, wantErr: true, creates: 1, lists: 1, aborts: 1},
		// It retries a cut one: the second create answers.
		{name: "cut answer", fault: emulator.FaultCut, n: 1, creates: 2, lists: 1, aborts: 1},
		{name: "every answer cut", fault: emulator.FaultCut, n: DefaultS3MaxAttempts, wantErr: true,
			creates: DefaultS3MaxAttempts, lists: 1, aborts: DefaultS3MaxAttempts},
		// The storage never got to the first request: the retry's listing finds only its own upload.
		{name: "no answer started", fault: emulator.FaultStallHeaders, n: 1, creates: 2, lists: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newS3EnvPolicy(t, testPolicy)
			ctx := context.Background()
			s := v.s3(S3Options{})
			me, err := v.c.Me(ctx)
			if err != nil {
				t.Fatal(err)
			}
			bucket := me.DefaultStorage.ConnectionSettings.Container
			key := me.DefaultStorage.ConnectionSettings.PathBase + "/orphan.bin-" + tc.name
			// Another upload in progress under a key that starts with ours is not ours to abort.
			other, err := s.CreateMultipartUpload(ctx, bucket, key+"x", nil)
			if err != nil {
				t.Fatal(err)
			}
			v.e.ResetCounters()
			if tc.n > 0 {
				v.e.FailNext(emulator.EndpointS3CreateMultipart, tc.n, tc.fault)
			}
			id, err := s.CreateMultipartUpload(ctx, bucket, key, map[string]string{"iv": "x"})
			if tc.wantErr != (err != nil) {
				t.Fatalf("create: %v, want an error: %v", err, tc.wantErr)
			}
			want := []emulator.MultipartUpload{{Bucket: bucket, Key: key + "x", ID: other}}
			if id != "" {
				want = append(want, emulator.MultipartUpload{Bucket: bucket, Key: key, ID: id})
			}
			slices.SortFunc(want, func(a, b emulator.MultipartUpload) int { return strings.Compare(a.Key, b.Key) })
			if got := v.e.MultipartUploads(); !slices.Equal(got, want) {
				t.Errorf("uploads in progress %+v, want %+v", got, want)
			}
			c := v.e.Counters()
			for endpoint, n := range map[string]int64{emulator.EndpointS3CreateMultipart: tc.creates,
				emulator.EndpointS3ListUploads: tc.lists, emulator.EndpointS3Abort: tc.aborts} {
				if c.Requests[endpoint] != n {
					t.Errorf("%d %s requests, want %d", c.Requests[endpoint], endpoint, n)
				}
			}
		})
	}
}
