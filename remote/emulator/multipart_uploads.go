package emulator

import (
	"cmp"
	"slices"
)

// MultipartUpload is an S3 multipart upload in progress on the emulated storage.
type MultipartUpload struct {
	Bucket, Key, ID string
	Parts           int // parts stored so far
}

// MultipartUploads lists the multipart uploads in progress (created, neither completed nor aborted),
// by bucket, key and id: what clients have left on the storage, which tests assert is nothing.
func (e *Emulator) MultipartUploads() []MultipartUpload {
	e.mu.RLock()
	out := make([]MultipartUpload, 0, len(e.st.uploads))
	for _, u := range e.st.uploads {
		out = append(out, MultipartUpload{Bucket: u.Bucket, Key: u.Key, ID: u.ID, Parts: len(u.Parts)})
	}
	e.mu.RUnlock()
	slices.SortFunc(out, func(a, b MultipartUpload) int {
		return cmp.Or(cmp.Compare(a.Bucket, b.Bucket), cmp.Compare(a.Key, b.Key), cmp.Compare(a.ID, b.ID))
	})
	return out
}
