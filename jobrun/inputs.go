package jobrun

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/upload"
)

// InputKind says how an --input names its file.
type InputKind int

const (
	InputLocal   InputKind = iota // a local file: reused by checksum, else uploaded
	InputLibrary                  // files/NAME: the newest library file of exactly that name
	InputID                       // id:ID
)

// Input is one input of a job, in the order given.
type Input struct {
	Raw        string
	Kind       InputKind
	Path       string // InputLocal: absolute path
	Name       string // InputLocal: the name it is published under; InputLibrary: the library name
	ID         string // InputID
	Decompress bool
}

// ParseInput reads PATH, files/NAME or id:ID. A path into a mounted rescalefs files/ folder is a library
// name (the mount's files/ shows the newest file of each name). A local file must exist and be a regular
// file: a usage error otherwise, before anything is created.
func ParseInput(s string, decompress bool) (Input, error) {
	in := Input{Raw: s, Decompress: decompress}
	switch {
	case strings.HasPrefix(s, "id:"):
		in.Kind, in.ID = InputID, strings.TrimPrefix(s, "id:")
		if in.ID == "" || strings.ContainsAny(in.ID, "/ ") {
			return in, usagef("--input %q: want id:FILEID", s)
		}
		return in, nil
	case strings.HasPrefix(s, "files/"):
		in.Kind, in.Name = InputLibrary, strings.TrimPrefix(s, "files/")
		if in.Name == "" || strings.Contains(in.Name, "/") {
			return in, usagef("--input %q: want files/NAME", s)
		}
		if _, err := os.Stat(s); err != nil { // not a local folder named files/: the library
			return in, nil
		}
	}
	abs, err := filepath.Abs(s)
	if err != nil {
		return in, usagef("--input %q: %v", s, err)
	}
	if dir := filepath.Dir(abs); filepath.Base(dir) == "files" && isMountRoot(filepath.Dir(dir)) {
		in.Kind, in.Name = InputLibrary, filepath.Base(abs)
		return in, nil
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return in, usagef("--input %s: %v", s, errors.Unwrap(err))
	}
	if !fi.Mode().IsRegular() {
		return in, usagef("--input %s: not a regular file", s)
	}
	in.Kind, in.Path, in.Name = InputLocal, abs, filepath.Base(abs)
	return in, nil
}

// isMountRoot says whether dir is the root of a rescalefs mount (it holds .rescalefs/status).
func isMountRoot(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ".rescalefs", "status"))
	return err == nil
}

// Resolved is an input's platform file and how it got there.
type Resolved struct {
	File   remote.File
	Reused bool // a local file the library already held (same sha512): nothing sent
	Sent   bool // a local file uploaded now
}

// Inputs resolves inputs to platform files. Local files go up through the upload engine (the same
// resumable engine as the mount's uploads/), and not at all when the library holds the same bytes.
// Each distinct input is resolved once, however many jobs name it.
type Inputs struct {
	c   *remote.Client
	eng *upload.Engine

	mu      sync.Mutex // guards done, waiters
	done    map[string]Resolved
	waiters map[string]chan remote.File // upload id -> its file, once the platform confirmed it
}

// NewInputs makes a resolver; eng may be nil when no local file is involved. Its OnDone must call
// Inputs.UploadDone (NewUploadEngine wires that).
func NewInputs(c *remote.Client) *Inputs {
	return &Inputs{c: c, done: map[string]Resolved{}, waiters: map[string]chan remote.File{}}
}

// NewUploadEngine starts an upload engine in dir whose confirmations reach in.
func (in *Inputs) NewUploadEngine(o upload.Options) (*upload.Engine, error) {
	o.Client = in.c
	o.OnDone = in.UploadDone
	eng, err := upload.New(o)
	if err != nil {
		return nil, err
	}
	in.eng = eng
	eng.Start(context.Background())
	return eng, nil
}

// UploadDone is the engine's OnDone.
func (in *Inputs) UploadDone(st upload.Status, f remote.File) {
	in.mu.Lock()
	ch := in.waiters[st.ID]
	delete(in.waiters, st.ID)
	in.mu.Unlock()
	if ch != nil {
		ch <- f
	}
}

func (i Input) key() string {
	switch i.Kind {
	case InputLocal:
		return "local:" + i.Path
	case InputLibrary:
		return "files:" + i.Name
	}
	return "id:" + i.ID
}

// Resolve finds or uploads one input.
func (in *Inputs) Resolve(ctx context.Context, i Input) (Resolved, error) {
	in.mu.Lock()
	r, ok := in.done[i.key()]
	in.mu.Unlock()
	if ok {
		return r, nil
	}
	switch i.Kind {
	case InputID:
		f, err := in.c.GetFile(ctx, i.ID)
		if err != nil {
			return r, fmt.Errorf("--input %s: %w", i.Raw, err)
		}
		r.File = f
	case InputLibrary:
		f, err := in.c.NewestLibraryFile(ctx, i.Name)
		if errors.Is(err, remote.ErrNotFound) {
			return r, usagef("--input %s: no library file is named exactly %q", i.Raw, i.Name)
		}
		if err != nil {
			return r, fmt.Errorf("--input %s: %w", i.Raw, err)
		}
		r.File = f
	default:
		var err error
		if r, err = in.local(ctx, i); err != nil {
			return r, err
		}
	}
	in.mu.Lock()
	in.done[i.key()] = r
	in.mu.Unlock()
	return r, nil
}

// local reuses a library file of the same name and sha512, else uploads the file.
func (in *Inputs) local(ctx context.Context, i Input) (Resolved, error) {
	sum, size, err := upload.HashFile(ctx, i.Path)
	if err != nil {
		return Resolved{}, fmt.Errorf("--input %s: %w", i.Raw, err)
	}
	same, err := in.c.LibraryFiles(ctx, i.Name)
	if err != nil {
		return Resolved{}, fmt.Errorf("--input %s: library: %w", i.Raw, err)
	}
	same = slices.DeleteFunc(same, func(f remote.File) bool {
		return f.Name != i.Name || f.SHA512() != sum || f.DecryptedSize != size
	})
	if len(same) > 0 {
		slices.SortStableFunc(same, func(a, b remote.File) int { return b.DateUploaded.Compare(a.DateUploaded.Time) })
		return Resolved{File: same[0], Reused: true}, nil
	}
	if in.eng == nil {
		return Resolved{}, fmt.Errorf("--input %s: no upload engine", i.Raw)
	}
	f, err := in.upload(ctx, i)
	if err != nil {
		return Resolved{}, err
	}
	if f.SHA512() != "" && f.SHA512() != sum {
		return Resolved{}, fmt.Errorf("--input %s: the platform's checksum differs from the local file's: changed while uploading?", i.Raw)
	}
	return Resolved{File: f, Sent: true}, nil
}

// uploadPoll is how often a waiting upload's state is checked for a failure.
const uploadPoll = 200 * time.Millisecond

func (in *Inputs) upload(ctx context.Context, i Input) (remote.File, error) {
	path, err := in.stage(i.Path)
	if err != nil {
		return remote.File{}, fmt.Errorf("--input %s: staging: %w", i.Raw, err)
	}
	ch := make(chan remote.File, 1)
	in.mu.Lock() // held across Enqueue so UploadDone cannot run before the waiter is registered
	id, err := in.eng.Enqueue(path, i.Name)
	if err != nil {
		in.mu.Unlock()
		os.Remove(path)
		return remote.File{}, fmt.Errorf("--input %s: %w", i.Raw, err)
	}
	in.waiters[id] = ch
	in.mu.Unlock()
	t := time.NewTicker(uploadPoll)
	defer t.Stop()
	for {
		select {
		case f := <-ch:
			return f, nil
		case <-ctx.Done():
			_ = in.eng.Cancel(id)
			return remote.File{}, ctx.Err()
		case <-t.C:
			if st, ok := in.eng.Status(id); ok && (st.State == upload.StateFailed || st.State == upload.StateDamaged) {
				_ = in.eng.Cancel(id)
				return remote.File{}, fmt.Errorf("--input %s: upload %s: %s", i.Raw, st.State, st.Error)
			}
		}
	}
}

// stage puts the user's file src in the engine's staging folder and returns the staging path. Staging
// files are 0600: a file that already is 0600 and ours is hard-linked (it costs nothing; the engine only
// renames it into pending/ and removes it once published); any other is copied, since a link shares
// the user's file mode and a chmod of the link would change the user's own file. The copy goes through
// copy_file_range (io.Copy between files), in the kernel.
func (in *Inputs) stage(src string) (string, error) {
	if fi, err := os.Stat(src); err == nil && fi.Mode().Perm() == 0o600 && ownedByUs(fi) {
		// A new name of our own: Link never replaces a file, so nothing has to be removed first.
		for range 3 {
			p := filepath.Join(in.eng.StagingDir(), "w-"+rand.Text())
			err := os.Link(src, p)
			if err == nil {
				return p, nil
			}
			if !errors.Is(err, fs.ErrExist) {
				break // another filesystem, or links refused: copy
			}
		}
	}
	dst, err := in.eng.CreateStaging() // 0600
	if err != nil {
		return "", err
	}
	if err := copyInto(dst, src); err != nil {
		dst.Close()
		os.Remove(dst.Name())
		return "", err
	}
	return dst.Name(), dst.Close()
}

func ownedByUs(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Getuid()
}

func copyInto(dst *os.File, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = io.Copy(dst, in)
	return err
}
