package upload

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/remote/remotetest"
)

// testPart is the part size of the tests: S3's minimum.
const testPart = MinPartSize

// platform is an emulator served on a fixed loopback address, so it can be restarted in place.
type platform struct {
	t    *testing.T
	dir  string // "" = in memory
	addr string
	e    *emulator.Emulator
	srv  *httptest.Server
	c    *remote.Client
}

func newPlatform(t *testing.T, persistent bool) *platform {
	t.Helper()
	p := &platform{t: t}
	if persistent {
		p.dir = t.TempDir()
	}
	p.start()
	c, err := remote.New(remote.Options{BaseURL: "http://" + p.addr, APIKey: p.e.APIKey(),
		MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, MaxRetryAfter: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p.c = c
	t.Cleanup(p.stop)
	return p
}

func (p *platform) start() {
	p.t.Helper()
	e, err := emulator.New(emulator.Options{DataDir: p.dir, APIKey: "test-key-0123456789"})
	if err != nil {
		p.t.Fatal(err)
	}
	addr := p.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var l net.Listener
	for range 100 { // the old server's port may take a moment to be free again
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(e)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	p.e, p.srv, p.addr = e, srv, l.Addr().String()
}

func (p *platform) stop() {
	if p.srv != nil {
		p.srv.CloseClientConnections()
		p.srv.Close()
		p.e.Close()
		p.srv = nil
	}
}

func (p *platform) restart() {
	p.t.Helper()
	p.stop()
	p.start()
}

func (p *platform) requests(endpoint string) int64 { return p.e.Counters().Requests[endpoint] }

// engineOpts are fast-retrying test options.
func (p *platform) engineOpts(dir string) Options {
	return Options{Client: p.c, Dir: dir, PartSize: testPart, UploadParallel: 3,
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		S3: remote.S3Options{MaxBackoff: 10 * time.Millisecond}}
}

// harness is an engine under test with its completions.
type harness struct {
	t    *testing.T
	eng  *Engine
	mu   sync.Mutex
	done map[string]remote.File // upload id -> published file
	ch   chan string
}

func startEngine(t *testing.T, o Options) *harness {
	t.Helper()
	h := &harness{t: t, done: map[string]remote.File{}, ch: make(chan string, 100)}
	o.OnDone = func(s Status, f remote.File) {
		h.mu.Lock()
		h.done[s.ID] = f
		h.mu.Unlock()
		h.ch <- s.ID
	}
	eng, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.eng = eng
	eng.Start(context.Background())
	t.Cleanup(func() { eng.Close() })
	return h
}

// holds reports whether the engine still has upload id among its pending uploads (a published one
// stays there, its data and record kept, until OnDone has returned: finish).
func (e *Engine) holds(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.ups[id]
	return ok
}

// wait returns the file the upload id was published as, once the engine is done with it (its data
// and record removed).
func (h *harness) wait(id string) remote.File {
	h.t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		h.mu.Lock()
		f, ok := h.done[id]
		h.mu.Unlock()
		if ok {
			waitFor(h.t, func() bool { return !h.eng.holds(id) })
			return f
		}
		select {
		case <-h.ch:
		case <-deadline:
			h.t.Fatalf("upload %s not done: %+v", id, h.eng.Snapshot())
		}
	}
}

func randomData(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 3))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// enqueue writes data into a staging file and enqueues it as name.
func enqueue(t *testing.T, eng *Engine, name string, data []byte) string {
	t.Helper()
	f, err := eng.CreateStaging()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	id, err := eng.Enqueue(f.Name(), name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// checkPublished checks that the platform holds plain as f, and that a Rescale-style client reading
// the object with the SDK and decrypting it with the registered key and the iv metadata gets plain.
func (p *platform) checkPublished(f remote.File, name string, plain []byte) {
	t := p.t
	t.Helper()
	if f.Name != name {
		t.Errorf("published as %q, want %q", f.Name, name)
	}
	sum := sha512.Sum512(plain)
	if f.SHA512() != hex.EncodeToString(sum[:]) || f.DecryptedSize != int64(len(plain)) {
		t.Fatalf("%s: registered sha512/size differ", name)
	}
	rc, _, err := p.e.Plaintext(f.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("%s: platform plaintext differs (%v)", name, err)
	}
	// As a Rescale client would: the object straight from storage.
	got, err = remotetest.StoredPlaintext(context.Background(), p.c, f)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("%s: object decrypted with the registered key differs (%v)", name, err)
	}
}

// blocker holds one part of one engine until released (or the attempt's context ends).
type blocker struct {
	part    int32
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func newBlocker(part int32) *blocker {
	return &blocker{part: part, reached: make(chan struct{}), release: make(chan struct{})}
}

func (b *blocker) hook(ctx context.Context, id string, part int32) error {
	if part != b.part {
		return nil
	}
	b.once.Do(func() { close(b.reached) })
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *blocker) waitReached(t *testing.T) {
	t.Helper()
	select {
	case <-b.reached:
	case <-time.After(60 * time.Second):
		t.Fatal("part never reached")
	}
}

// journalEmpty fails t unless the engine in dir keeps no upload: no data file and no journal record.
func journalEmpty(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{"pending", "journal"} {
		if ents, _ := os.ReadDir(filepath.Join(dir, d)); len(ents) != 0 {
			t.Errorf("%s not empty: %v", d, ents)
		}
	}
}

// startMidMultipart starts an engine in dir and a multipart upload of data named name, and returns once
// the upload is held before sending its second part (its multipart upload created, one part stored).
func startMidMultipart(t *testing.T, p *platform, dir, name string, data []byte) (*harness, string) {
	t.Helper()
	o := p.engineOpts(dir)
	o.SmallThreshold = -1
	b := newBlocker(2)
	o.beforePart = b.hook
	h := startEngine(t, o)
	id := enqueue(t, h.eng, name, data)
	b.waitReached(t)
	return h, id
}
