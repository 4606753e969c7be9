package fs

import (
	"fmt"
	"log"
	"log/slog"
	"strings"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/upload"
)

// Options configure a mount.
type Options struct {
	Client Platform     // the platform (a *remote.Client); required
	Cache  *cache.Cache // the block cache every file read goes through; required

	Poll      time.Duration // how often the jobs list and states are refreshed; 0 = DefaultPoll
	MaxJobAge time.Duration // completed/ shows jobs completed within this age; 0 = all
	Logger    *slog.Logger  // nil = discard
	CacheDir  string        // statfs reports this directory's disk (the staging disk); "" = os.TempDir()

	// MountOptions are raw -o options ("allow_other", "ro", "allow_other,ro", ...). allow_other and
	// debug are understood here (allow_other adds default_permissions, and only the owner and root get
	// in: owner.go); the rest go to the kernel (or fusermount) as they are.
	MountOptions []string
	Debug        bool // go-fuse's request log, to Logger at debug level

	// StatusExtra, if set, is called for every read of .rescalefs/status; its value appears there under
	// "extra" (the uploads will report through it).
	StatusExtra func() any

	// Uploads makes uploads/ writable: files closed there are published through this engine (started
	// by the caller after Mount; its OnDone must call Mounted.UploadDone). nil = read-only and empty.
	Uploads *upload.Engine
	// UploadSettle is how long a closed file must stay unwritten before it is queued; 0 =
	// DefaultUploadSettle.
	UploadSettle time.Duration
	// UploadHold is how long a file closed under a name shaped like rsync's temporaries (.name.XXXXXX,
	// also .case.config) waits for a rename before it is published under that name; 0 = a minute.
	UploadHold time.Duration
	// FileSeen, if set, is told the metadata of every file listed (jobs' files, the library, new
	// uploads): the direct storage source registers them, sparing one GetFile per file read.
	FileSeen func(...remote.File)
	// WalkAhead bounds the read-ahead across the files of a folder walked in order (walkahead.go).
	WalkAhead WalkAheadOptions
	// MaxTreeFiles bounds the files of completed jobs' listings kept (LRU); 0 = DefaultMaxTreeFiles.
	MaxTreeFiles int
	// Clock is the mount's time, the poller's rounds included (clock.go); nil = the real clock.
	// Tests pass one they move by hand.
	Clock Clock
}

// DefaultPoll is the default interval between refreshes of the jobs list.
const DefaultPoll = 30 * time.Second

// Kernel cache timeouts, chosen per kind of entry (go-fuse's nil default would mean no caching at all):
const (
	// immutableTimeout: a completed job's files and folders never change, so the kernel may keep
	// their entries and attributes for long.
	immutableTimeout = time.Hour
	// liveTimeout: a running job's tree, the library, fixed files with changing content.
	liveTimeout = time.Second
	// negativeTimeout: a missing name is remembered briefly, so `ls x || ls x` does not ask twice
	// while a job that appears is still seen quickly (the poller also invalidates new names).
	negativeTimeout = time.Second
	// noCache is the shortest timeout the kernel can be given, for attributes that must always be
	// asked afresh (the status file's size). Not 0: go-fuse replaces a zero timeout with the mount's
	// default (liveTimeout).
	noCache = time.Nanosecond

	// maxWrite is the largest read or write request: 1 MiB, the kernel's maximum (max_pages 256).
	maxWrite = 1 << 20
	// maxBackground raises the kernel's limit of concurrent async requests (read-ahead among them)
	// from go-fuse's 12, so parallel readers and read-ahead are not serialised in the kernel.
	maxBackground = 64
	// maxReadAhead asks for 1 MiB of kernel read-ahead. The kernel caps it at its default (128 KiB)
	// at init; Mount then raises the mount's bdi read_ahead_kb when it can (we run as root).
	maxReadAhead = 1 << 20
)

// fuseOptions turns Options into go-fuse's. Timeouts are explicit pointers (nil would disable caching),
// request sizes raised, and the mount named so /proc/mounts shows "rescalefs ... fuse.rescalefs".
func (o *Options) fuseOptions(logger *slog.Logger) (*fusefs.Options, error) {
	entry, attr, neg := liveTimeout, liveTimeout, negativeTimeout
	fo := &fusefs.Options{
		EntryTimeout:    &entry,
		AttrTimeout:     &attr,
		NegativeTimeout: &neg,
		MountOptions: fuse.MountOptions{
			FsName:        "rescalefs",
			Name:          "rescalefs",
			MaxWrite:      maxWrite,
			MaxBackground: maxBackground,
			MaxReadAhead:  maxReadAhead,
			// Our reads answer from memory (ReadResultData), never from a file descriptor, so there
			// is nothing to splice; with splicing on, go-fuse tried it for every read anyway (a
			// pipe fcntl, a failed splice and an ioctl per read, and at 1 MiB reads a formatted
			// error) before falling back to writev.
			DisableSplice: true,
			// We are root on the machines this runs on: mount(2) directly, falling back to
			// fusermount3 when that fails (a user mount).
			DirectMount: true,
			// Extended attributes are ours (user.rescale.*); security labels are not asked of us.
			IgnoreSecurityLabels: true,
			Debug:                o.Debug,
			Logger:               log.New(slogWriter{logger}, "", 0),
		},
		Logger: log.New(slogWriter{logger}, "", 0),
		UID:    uint32(syscall.Getuid()),
		GID:    uint32(syscall.Getgid()),
	}
	for _, raw := range o.MountOptions {
		for _, opt := range strings.Split(raw, ",") {
			opt = strings.TrimSpace(opt)
			switch {
			case opt == "":
			case opt == "allow_other":
				// Other users reach the mount: the kernel checks modes (default_permissions) and
				// ownerOnly (owner.go) lets only the owner and root in.
				fo.AllowOther = true
				fo.Options = append(fo.Options, "default_permissions")
			case opt == "debug":
				fo.Debug = true
			case opt == "rw":
				// The default; uploads/ (issue 4) is the only writable place anyway.
			case strings.HasPrefix(opt, "fsname="), strings.HasPrefix(opt, "subtype="):
				return nil, fmt.Errorf("mount option %q: the mount is always named rescalefs", opt)
			default:
				fo.Options = append(fo.Options, opt)
			}
		}
	}
	return fo, nil
}

// slogWriter sends go-fuse's log lines (its debug trace and its rare warnings) to the slog logger.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug(strings.TrimRight(string(p), "\n"), "source", "go-fuse")
	return len(p), nil
}
