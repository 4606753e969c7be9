package fs

import (
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rescalefs/rescalefs/remote"
)

// Extended attributes carry what ls cannot show, under user.rescale. (getfattr -d shows the user
// namespace by default). They are read-only: set and remove answer EROFS (see base).

const xattrPrefix = "user.rescale."

type xattr struct{ name, value string }

func xattrTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// jobXattrs are a job folder's: its status, name, owner and dates, and once completed its outcome,
// "succeeded" or "failed" (failed runs and stopped jobs; status_reason tells which).
func jobXattrs(j jobInfo) []xattr {
	outcome := ""
	switch {
	case j.failed():
		outcome = "failed"
	case j.Completed && j.Succeeded:
		outcome = "succeeded"
	}
	return compact([]xattr{
		{"id", j.ID},
		{"name", j.Name},
		{"owner", j.Owner},
		{"status", j.Status},
		{"status_reason", j.Reason},
		{"date_inserted", xattrTime(j.Inserted)},
		{"date_status", xattrTime(j.StatusDate)},
		{"date_completed", xattrTime(j.CompletedAt)},
		{"outcome", outcome},
	})
}

// fileXattrs are a file's: id, sha512 and the job it belongs to.
func fileXattrs(f *remote.File, jobID string) []xattr {
	return compact([]xattr{
		{"id", f.ID},
		{"sha512", f.SHA512()},
		{"job", jobID},
		{"date_uploaded", xattrTime(f.DateUploaded.Time)},
		{"type", strconv.Itoa(f.TypeID)},
		{"owner", f.Owner},
	})
}

// compact drops empty values: an attribute that does not exist is better than an empty one.
func compact(xs []xattr) []xattr {
	out := xs[:0]
	for _, x := range xs {
		if x.value != "" {
			out = append(out, x)
		}
	}
	return out
}

// getxattr answers getxattr(2) from a list: size queries (empty dest), ERANGE when dest is too small,
// ENODATA for a name not there.
func getxattr(xs []xattr, name string, dest []byte) (uint32, syscall.Errno) {
	short, ok := strings.CutPrefix(name, xattrPrefix)
	if !ok {
		return 0, syscall.ENODATA
	}
	for _, x := range xs {
		if x.name == short {
			return fill(dest, x.value)
		}
	}
	return 0, syscall.ENODATA
}

// listxattr answers listxattr(2): the NUL-terminated names.
func listxattr(xs []xattr, dest []byte) (uint32, syscall.Errno) {
	var b strings.Builder
	for _, x := range xs {
		b.WriteString(xattrPrefix)
		b.WriteString(x.name)
		b.WriteByte(0)
	}
	return fill(dest, b.String())
}

func fill(dest []byte, v string) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}
