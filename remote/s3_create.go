package remote

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// CreateMultipartUpload starts a multipart upload of the object key, with meta as its metadata, and
// returns the upload's id. key must be fresh (upload names objects with a random suffix): every
// other upload in progress under it is taken for one this call left behind.
//
// A create the storage carried out but whose answer was lost (a body cut or stalled, a timeout) leaves
// an upload nobody knows the id of, and the SDK's retry or the caller's next attempt makes another:
// the first stays on the storage, unaborted, until a lifecycle rule (if any) removes it. So when the
// call took more than one attempt, or failed, the key's uploads in progress are listed and every one
// but the answered one aborted. A clean create costs nothing more. An answer lost after the listing
// (a request held somewhere longer than the whole call) still escapes; so does a call whose ctx ended.
func (s *S3Client) CreateMultipartUpload(ctx context.Context, bucket, key string, meta map[string]string) (string, error) {
	out, err := s.sdk.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Metadata: meta})
	if err != nil {
		if ctx.Err() == nil {
			s.abortOthers(ctx, bucket, key, "")
		}
		return "", fmt.Errorf("create multipart upload: %w", err)
	}
	id := aws.ToString(out.UploadId)
	if ar, ok := retry.GetAttemptResults(out.ResultMetadata); !ok || len(ar.Results) > 1 {
		s.abortOthers(ctx, bucket, key, id)
	}
	return id, nil
}

// abortOthers aborts the multipart uploads in progress under exactly key, but keep. It is a clean-up:
// its failures are logged, never returned (the create's outcome stands either way).
func (s *S3Client) abortOthers(ctx context.Context, bucket, key, keep string) {
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(key)}
	for {
		lu, err := s.sdk.ListMultipartUploads(ctx, in)
		if err != nil {
			s.log.Warn("a multipart upload may be left on the storage: listing uploads failed", "key", key, "error", err)
			return
		}
		for _, u := range lu.Uploads {
			id := aws.ToString(u.UploadId)
			if aws.ToString(u.Key) != key || id == keep {
				continue // a longer key under the prefix is another object's
			}
			_, err := s.sdk.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket),
				Key: aws.String(key), UploadId: aws.String(id)})
			if err != nil && !IsNoSuchUpload(err) {
				s.log.Warn("a multipart upload is left on the storage: abort failed", "key", key, "upload", id, "error", err)
				continue
			}
			s.log.Debug("aborted a multipart upload a lost create answer left behind", slog.String("key", key), slog.String("upload", id))
		}
		next := aws.ToString(lu.NextKeyMarker)
		nextID := aws.ToString(lu.NextUploadIdMarker)
		if !aws.ToBool(lu.IsTruncated) || next == "" && nextID == "" ||
			next == aws.ToString(in.KeyMarker) && nextID == aws.ToString(in.UploadIdMarker) {
			return
		}
		in.KeyMarker, in.UploadIdMarker = aws.String(next), aws.String(nextID)
	}
}
