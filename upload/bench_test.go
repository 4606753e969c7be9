package upload

// Upload throughput against the emulator with WAN-like faults (latency per request, bandwidth per
// connection): the engine (multipart, parts in parallel) against one plain PutObject of the same
// ciphertext, and the small path against multipart for threshold-sized files.
//
//	go test -run '^$' -bench Upload -benchtime 1x ./upload/
//	RESCALEFS_BENCH_MIB=1024 go test -run '^$' -bench Upload -benchtime 1x -timeout 30m ./upload/

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/cbc"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

func benchSize() int {
	if v, err := strconv.Atoi(os.Getenv("RESCALEFS_BENCH_MIB")); err == nil && v > 0 {
		return v << 20
	}
	return 256 << 20
}

// wan is the fault profile of the benchmarks: 20 ms per request, 25 MiB/s per connection.
var wan = emulator.Faults{Latency: 20 * time.Millisecond, Bandwidth: 25 << 20}

func benchPlatform(b *testing.B) *platform {
	p := &platform{}
	e, err := emulator.New(emulator.Options{APIKey: "bench-key-0123456789"})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(e)
	b.Cleanup(func() { srv.Close(); e.Close() })
	c, err := remote.New(remote.Options{BaseURL: srv.URL, APIKey: e.APIKey()})
	if err != nil {
		b.Fatal(err)
	}
	p.e, p.c = e, c
	e.SetFaults(wan)
	return p
}

func BenchmarkUpload(b *testing.B) {
	size := benchSize()
	data := randomData(1, size)
	for _, bc := range []struct {
		name     string
		parallel int
		part     int64
	}{{"engine-p4-16MiB", 4, 16 << 20}, {"engine-p8-16MiB", 8, 16 << 20}, {"engine-p16-16MiB", 16, 16 << 20}} {
		b.Run(bc.name, func(b *testing.B) {
			p := benchPlatform(b)
			b.SetBytes(int64(size))
			for b.Loop() {
				dir := b.TempDir()
				done := make(chan struct{}, 1)
				eng, err := New(Options{Client: p.c, Dir: dir, PartSize: bc.part, UploadParallel: bc.parallel, SmallThreshold: -1,
					OnDone: func(Status, remote.File) { done <- struct{}{} }})
				if err != nil {
					b.Fatal(err)
				}
				path := stagingFile(b, eng, data)
				eng.Start(context.Background())
				if _, err := eng.Enqueue(path, "bench.bin"); err != nil {
					b.Fatal(err)
				}
				select {
				case <-done:
				case <-time.After(30 * time.Minute):
					b.Fatal("timeout")
				}
				eng.Close()
			}
		})
	}
	b.Run("put-single", func(b *testing.B) {
		p := benchPlatform(b)
		ctx := context.Background()
		me, err := p.c.Me(ctx)
		if err != nil {
			b.Fatal(err)
		}
		cs := me.DefaultStorage.ConnectionSettings
		s, err := p.c.NewS3Client(ctx, remote.S3Options{Region: cs.Region, Endpoint: cs.Endpoint})
		if err != nil {
			b.Fatal(err)
		}
		key, iv := cbc.NewKey(), cbc.NewIV()
		enc, _ := cbc.NewEncrypter(key, iv)
		ct, _ := enc.Part(data, true)
		b.SetBytes(int64(size))
		for b.Loop() {
			_, err := s.SDK().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(cs.Container),
				Key: aws.String(cs.PathBase + "/put.bin"), Body: bytes.NewReader(ct), ContentLength: aws.Int64(int64(len(ct))),
				Metadata: map[string]string{"iv": base64.StdEncoding.EncodeToString(iv)}})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkUploadSmallVsMultipart measures the fixed cost of each path for files near the threshold.
func BenchmarkUploadSmallVsMultipart(b *testing.B) {
	for _, size := range []int{1 << 20, 4 << 20, 8 << 20, 16 << 20} {
		for _, small := range []bool{true, false} {
			name := fmt.Sprintf("%dMiB-multipart", size>>20)
			th := int64(-1)
			if small {
				name, th = fmt.Sprintf("%dMiB-small", size>>20), int64(size)+1
			}
			b.Run(name, func(b *testing.B) {
				p := benchPlatform(b)
				data := randomData(2, size)
				b.SetBytes(int64(size))
				for b.Loop() {
					done := make(chan struct{}, 1)
					eng, err := New(Options{Client: p.c, Dir: b.TempDir(), PartSize: MinPartSize, UploadParallel: 4, SmallThreshold: th,
						OnDone: func(Status, remote.File) { done <- struct{}{} }})
					if err != nil {
						b.Fatal(err)
					}
					path := stagingFile(b, eng, data)
					eng.Start(context.Background())
					if _, err := eng.Enqueue(path, "s.bin"); err != nil {
						b.Fatal(err)
					}
					<-done
					eng.Close()
				}
			})
		}
	}
}

func stagingFile(b *testing.B, eng *Engine, data []byte) string {
	f, err := eng.CreateStaging()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		b.Fatal(err)
	}
	f.Close()
	return f.Name()
}
