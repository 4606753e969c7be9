package remote

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rescalefs/rescalefs/remote/cbc"
)

// metaIVKey is the object metadata holding the file IV (base64), as Rescale's clients set it.
const metaIVKey = "iv"

// directBodyAttempts bounds the reads of one ranged body that breaks mid-way; each resumes where the
// last one stopped. The SDK retries failures up to the headers; a cut body is ours to retry.
const directBodyAttempts = 4

// ReadRangeDirect reads plaintext bytes [off, off+len(p)) of f into p straight from storage: the
// ciphertext range cbc.CipherRange names (with the block before it, the IV of the range), decrypted
// with f's key. It returns nil only when all len(p) bytes are in p. Like Client.ReadRange, a range past
// the end of the file fails with ErrRange (off at or past the end) or ErrShortBody.
func (s *S3Client) ReadRangeDirect(ctx context.Context, f File, off int64, p []byte) error {
	return s.ReadRangeDirectVec(ctx, f, off, [][]byte{p})
}

// ReadRangeDirectVec is ReadRangeDirect for a destination spread over several buffers, filled in order
// from one ranged GET: the block cache passes one buffer per block. The body is read straight into the
// buffers and decrypted there as it arrives (cbc.RangeDecrypter): no buffer in between and no copy of
// the plaintext, but for the few AES blocks cut by the range's ends or by the borders of the buffers.
func (s *S3Client) ReadRangeDirectVec(ctx context.Context, f File, off int64, bufs [][]byte) error {
	return s.ReadRangeDirectVecSum(ctx, f, off, bufs, nil)
}

// ReadRangeDirectVecSum is ReadRangeDirectVec that also sets sums[i] (when sums is not nil) to the
// CRC-32C (Castagnoli) of bufs[i], computed on each piece of plaintext as it is decrypted, while it is
// in the CPU's cache (cache.ChecksumSource).
func (s *S3Client) ReadRangeDirectVecSum(ctx context.Context, f File, off int64, bufs [][]byte, sums []uint32) error {
	n := int64(scatter(bufs).size())
	if n == 0 {
		return nil
	}
	if off < 0 {
		return fmt.Errorf("direct read %s at %d: %w: negative offset", f.ID, off, ErrBadRequest)
	}
	if off >= f.DecryptedSize {
		return fmt.Errorf("direct read %s at %d: %w: the file has %d bytes", f.ID, off, ErrRange, f.DecryptedSize)
	}
	if off+n > f.DecryptedSize {
		return fmt.Errorf("direct read %s [%d,%d): %w: the file has %d bytes", f.ID, off, off+n, ErrShortBody, f.DecryptedSize)
	}
	if f.PathParts.Container == "" || f.PathParts.Path == "" {
		return fmt.Errorf("direct read %s: %w: no storage path", f.ID, ErrBadRequest)
	}
	key, err := f.EncryptionKey()
	if err != nil {
		return err
	}
	dec, err := cbc.NewRangeDecrypter(key, f.DecryptedSize, off, bufs)
	if err != nil {
		return fmt.Errorf("direct read %s [%d,%d): %w", f.ID, off, off+n, err)
	}
	if sums != nil {
		clear(sums)
		dec.OnPlain(func(i int, p []byte) { sums[i] = crc32.Update(sums[i], castagnoli, p) })
	}
	cs, ce := cbc.CipherRange(off, n, f.DecryptedSize)
	err = s.getRange(ctx, f, cs, ce-cs, func(meta map[string]string) error {
		if !dec.NeedsIV() {
			return nil
		}
		// Only a range in block 0 needs the file IV; later ranges carry their own in the block before.
		iv, err := s.fileIV(ctx, f, meta)
		if err != nil {
			return err
		}
		return dec.SetIV(iv)
	}, dec)
	if err != nil {
		return fmt.Errorf("direct read %s [%d,%d): %w", f.ID, off, off+n, err)
	}
	if !dec.Done() {
		return fmt.Errorf("direct read %s [%d,%d): %w: %d ciphertext bytes missing", f.ID, off, off+n, ErrShortBody, dec.Remaining())
	}
	return nil
}

// castagnoli is the CRC-32C table of ReadRangeDirectVecSum's checksums (the block cache's disk tier's).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// rangeSink takes a ranged body as it arrives, with no buffer in between: Next says where the next
// bytes go (never more than the range still needs), Advance that k bytes were written there.
type rangeSink interface {
	Next() []byte
	Advance(k int) error
}

// getRange reads the object's bytes [cstart, cstart+length) into sink, resuming a body that breaks
// where it stopped. start is called once, with the object's metadata from the first answer (which
// every GET carries, so the file IV usually costs no extra request), before any byte is read.
func (s *S3Client) getRange(ctx context.Context, f File, cstart, length int64, start func(map[string]string) error, sink rangeSink) error {
	want := cbc.CiphertextSize(f.DecryptedSize)
	var done int64
	started := false
	var lastErr error
	for attempt := 1; done < length; attempt++ {
		if attempt > directBodyAttempts {
			return lastErr
		}
		if attempt > 1 {
			if err := sleepCtx(ctx, backoff(attempt-1, 50*time.Millisecond, time.Second)); err != nil {
				return err
			}
		}
		from := cstart + done
		end := cstart + length - 1
		out, err := s.sdk.GetObject(ctx, &s3.GetObjectInput{
			Bucket: aws.String(f.PathParts.Container),
			Key:    aws.String(f.PathParts.Path),
			Range:  aws.String(fmt.Sprintf("bytes=%d-%d", from, end)),
		})
		if err != nil {
			// The SDK has already retried what is worth retrying.
			return fmt.Errorf("GetObject [%d,%d]: %w", from, end, err)
		}
		if total, ok := contentRangeTotal(aws.ToString(out.ContentRange)); ok && total != want {
			out.Body.Close()
			return fmt.Errorf("%w: object is %d bytes, want %d for %d plaintext bytes",
				ErrBadRange, total, want, f.DecryptedSize)
		}
		if l := aws.ToInt64(out.ContentLength); out.ContentLength != nil && l != end-from+1 {
			out.Body.Close()
			return lengthError(l, end-from+1)
		}
		if !started {
			if err := start(out.Metadata); err != nil {
				out.Body.Close()
				return err
			}
			started = true
		}
		err = readBody(out.Body, length-done, sink, &done)
		out.Body.Close()
		var bodyErr *retryableBody
		if errors.As(err, &bodyErr) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			lastErr = bodyErr.err
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readBody reads left bytes of body into sink, counting them into *done. A body that breaks, ends early
// or returns nothing maxEmptyReads times in a row (io.ErrNoProgress, see progressBody) is a
// *retryableBody; an error of the sink is returned as it is. An answer's body from our clients is
// already behind the guard's progressBody (guardedBody) and is read as it is: a second guard would
// only count the same empty reads twice. Any other body gets one.
func readBody(body io.Reader, left int64, sink rangeSink, done *int64) error {
	if _, guarded := body.(*guardedBody); !guarded {
		body = &progressBody{r: body}
	}
	for left > 0 {
		p := sink.Next()
		if int64(len(p)) > left {
			p = p[:left]
		}
		if len(p) == 0 {
			return fmt.Errorf("%w: the destination is full with %d bytes to go", ErrBadRequest, left)
		}
		k, err := body.Read(p)
		if k > 0 {
			*done += int64(k)
			left -= int64(k)
			if err := sink.Advance(k); err != nil {
				return err
			}
		}
		if err != nil && left > 0 {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return &retryableBody{err: shortBodyErr("", err)}
		}
	}
	return nil
}

// contentRangeTotal reads the total of "bytes a-b/total".
func contentRangeTotal(v string) (int64, bool) {
	_, tot, ok := strings.Cut(v, "/")
	if !ok || tot == "*" {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(tot), 10, 64)
	return n, err == nil
}

// fileIV is the object's IV: from meta (the GET answer at hand) or the cache, else one HeadObject.
// Its errors name neither file nor range: ReadRangeDirectVec wraps them with both.
func (s *S3Client) fileIV(ctx context.Context, f File, meta map[string]string) ([]byte, error) {
	ck := f.PathParts.Container + "/" + f.PathParts.Path
	s.ivMu.Lock()
	iv, ok := s.ivs[ck]
	s.ivMu.Unlock()
	if ok {
		return iv, nil
	}
	v, ok := metaValue(meta, metaIVKey)
	if !ok {
		out, err := s.sdk.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(f.PathParts.Container),
			Key: aws.String(f.PathParts.Path)})
		if err != nil {
			return nil, fmt.Errorf("HeadObject: %w", err)
		}
		if v, ok = metaValue(out.Metadata, metaIVKey); !ok {
			return nil, fmt.Errorf("object has no %q metadata", metaIVKey)
		}
	}
	iv, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(iv) != cbc.BlockSize {
		return nil, fmt.Errorf("%q metadata is not a base64 %d-byte IV", metaIVKey, cbc.BlockSize)
	}
	s.ivMu.Lock()
	if len(s.ivs) >= maxCachedIVs {
		clear(s.ivs)
	}
	s.ivs[ck] = iv
	s.ivMu.Unlock()
	return iv, nil
}

// metaValue looks a metadata key up case-insensitively: the SDK lower-cases header names, other
// clients and proxies may not.
func metaValue(m map[string]string, k string) (string, bool) {
	if v, ok := m[k]; ok {
		return v, true
	}
	for mk, v := range m {
		if strings.EqualFold(mk, k) {
			return v, true
		}
	}
	return "", false
}

// errDirectUnavailable marks a file the direct path cannot serve (not S3, no path): not worth a log line.
var errDirectUnavailable = errors.New("direct storage read not available")
