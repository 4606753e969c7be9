// Package remotetest holds test helpers for code that uses the remote client. Import it from _test.go
// files only.
package remotetest

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/cbc"
)

// StoredPlaintext reads file f the way Rescale's own clients do, bypassing the API's /contents/: the
// whole object straight from its storage, decrypted with the registered key and the object's iv
// metadata. Tests compare it with what was uploaded, proving the platform holds a file any Rescale
// client can read.
func StoredPlaintext(ctx context.Context, c *remote.Client, f remote.File) ([]byte, error) {
	s, err := c.NewS3Client(ctx, remote.S3Options{Region: f.Storage.ConnectionSettings.Region,
		Endpoint: f.Storage.ConnectionSettings.Endpoint})
	if err != nil {
		return nil, err
	}
	out, err := s.SDK().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(f.PathParts.Container),
		Key: aws.String(f.PathParts.Path)})
	if err != nil {
		return nil, fmt.Errorf("get object %s: %w", f.PathParts.Path, err)
	}
	defer out.Body.Close()
	iv, err := base64.StdEncoding.DecodeString(out.Metadata["iv"])
	if err != nil || len(iv) != cbc.BlockSize {
		return nil, fmt.Errorf("object %s: iv metadata %q", f.PathParts.Path, out.Metadata["iv"])
	}
	key, err := f.EncryptionKey()
	if err != nil {
		return nil, err
	}
	dr, err := cbc.NewDecryptingReader(out.Body, key, iv, f.DecryptedSize)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(dr)
}
