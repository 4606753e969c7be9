// Package remotetest holds test helpers for code that uses the remote client. Import it from _test.go
// files only.
package remotetest

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"slices"

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

// Library returns what the user's library holds (deleted files left out) and the objects in its
// default storage that none of those files holds: what the user pays for and nothing shows.
func Library(ctx context.Context, c *remote.Client) (live []remote.File, orphans []string, err error) {
	files, err := c.LibraryFiles(ctx, "")
	if err != nil {
		return nil, nil, err
	}
	var held []string
	for _, f := range files {
		if !f.IsDeleted {
			live = append(live, f)
			held = append(held, f.PathParts.Path)
		}
	}
	me, err := c.Me(ctx)
	if err != nil {
		return nil, nil, err
	}
	cs := me.DefaultStorage.ConnectionSettings
	s, err := c.NewS3Client(ctx, remote.S3Options{Region: cs.Region, Endpoint: cs.Endpoint})
	if err != nil {
		return nil, nil, err
	}
	pages := s3.NewListObjectsV2Paginator(s.SDK(), &s3.ListObjectsV2Input{Bucket: aws.String(cs.Container)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, nil, err
		}
		for _, o := range page.Contents {
			if k := aws.ToString(o.Key); !slices.Contains(held, k) {
				orphans = append(orphans, k)
			}
		}
	}
	return live, orphans, nil
}
