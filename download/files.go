package download

import (
	"context"
	"errors"
	"log/slog"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/remote"
)

// FilesOptions configure Files. Cache and Dir are required.
type FilesOptions struct {
	Cache    *cache.Cache // reads share its blocks, fetcher and request limits (a mount's, or one made for the command)
	Dir      string       // created when missing; files land in Dir/<jobId>/<relativePath>
	Parallel int          // files in flight; default DefaultParallel
	Logger   *slog.Logger // nil = discard
	// FileSeen, if set, is told the files before they are read (see Options.FileSeen).
	FileSeen func(...remote.File)
}

// DefaultParallel is how many files a download has in flight: small files cost one request each, so
// a job of thousands of them is bound by round trips unless many are in flight (Rescale's own client
// has 5 to 20). Large files are fewer at once (maxLargeFiles): each holds a read buffer.
const DefaultParallel = 16

// maxLargeFiles bounds the files larger than readSize downloaded at once, each holding a readSize
// buffer; their throughput comes from the cache's read-ahead, not from their number.
const maxLargeFiles = 4

// Files downloads the given outputs of job jobID (as remote.Client.JobFiles lists them) into
// Dir/<jobID>/<relativePath>, exactly as the automatic downloads do: written to a partial file,
// verified against the platform's size and sha512, renamed into place, recorded so a second call
// skips what is already there, resumed after an interruption. It returns once every file is done or
// has failed: nil, or an error naming the failures. For one-shot downloads of a known file list (the
// bench's many-files row); `rescalefs submit --download` goes through FetchJobs, which lists the jobs
// itself. The Downloader uses the same path for the jobs it finds.
func Files(ctx context.Context, o FilesOptions, jobID string, files []remote.File) error {
	if o.Cache == nil {
		return errors.New("download: no Cache")
	}
	if o.Dir == "" {
		return errors.New("download: no Dir")
	}
	d, err := newDownloader(Options{Cache: o.Cache, Dir: o.Dir, Parallel: o.Parallel, Logger: o.Logger,
		FileSeen: o.FileSeen}, nil)
	if err != nil {
		return err
	}
	if err := d.openDir(); err != nil {
		return err
	}
	defer d.root.Close()
	if err := d.root.MkdirAll(jobID, 0o777); err != nil {
		return diskErr(err)
	}
	j := &job{id: jobID, succeeded: true}
	rec := loadRecord(d.root, jobID, d.log)
	return d.downloadFiles(ctx, j, rec, files)
}
