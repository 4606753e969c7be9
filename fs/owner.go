package fs

import (
	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// With -o allow_other the kernel lets every local user's requests through to us: without a check,
// anyone could read the outputs the API key can see and publish into its library. ownerOnly wraps the
// node file system and answers EACCES to every request that reaches a name, a file's data or its
// attributes from anyone but the mount's owner and root. Only the mount point itself answers stat
// (df and path walks need it). allow_other also implies default_permissions (fuseOptions), so the
// kernel checks the modes too.
type ownerOnly struct {
	fuse.RawFileSystem
	uid uint32
}

func (o *ownerOnly) ok(h *fuse.InHeader) bool { return h.Caller.Uid == o.uid || h.Caller.Uid == 0 }

func (o *ownerOnly) Lookup(c <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if !o.ok(h) {
		return fuse.EACCES
	}
	return o.RawFileSystem.Lookup(c, h, name, out)
}

func (o *ownerOnly) GetAttr(c <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	if !o.ok(&in.InHeader) && in.NodeId != fuse.FUSE_ROOT_ID {
		return fuse.EACCES
	}
	return o.RawFileSystem.GetAttr(c, in, out)
}

func (o *ownerOnly) SetAttr(c <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if !o.ok(&in.InHeader) {
		return fuse.EACCES
	}
	return o.RawFileSystem.SetAttr(c, in, out)
}

func (o *ownerOnly) Open(c <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if !o.ok(&in.InHeader) {
		return fuse.EACCES
	}
	return o.RawFileSystem.Open(c, in, out)
}

func (o *ownerOnly) OpenDir(c <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if !o.ok(&in.InHeader) {
		return fuse.EACCES
	}
	return o.RawFileSystem.OpenDir(c, in, out)
}

func (o *ownerOnly) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	if !o.ok(&in.InHeader) {
		return fuse.EACCES
	}
	return o.RawFileSystem.Create(c, in, name, out)
}

func (o *ownerOnly) Tmpfile(c <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	if !o.ok(&in.InHeader) {
		return fuse.EACCES
	}
	return o.RawFileSystem.Tmpfile(c, in, out)
}

func (o *ownerOnly) Mkdir(c <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	if !o.ok(&in.InHeader) {
		return fuse.EACCES
	}
	return o.RawFileSystem.Mkdir(c, in, name, out)
}

func (o *ownerOnly) Mknod(c <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if !o.ok(&in.InHeader) {
		return fuse.EACCES
	}
	return o.RawFileSystem.Mknod(c, in, name, out)
}

func (o *ownerOnly) Unlink(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if !o.ok(h) {
		return fuse.EACCES
	}
	return o.RawFileSystem.Unlink(c, h, name)
}

func (o *ownerOnly) Rmdir(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if !o.ok(h) {
		return fuse.EACCES
	}
	return o.RawFileSystem.Rmdir(c, h, name)
}

func (o *ownerOnly) Rename(c <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if !o.ok(&in.InHeader) {
		return fuse.EACCES
	}
	return o.RawFileSystem.Rename(c, in, oldName, newName)
}

func (o *ownerOnly) Link(c <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	if !o.ok(&in.InHeader) {
		return fuse.EACCES
	}
	return o.RawFileSystem.Link(c, in, name, out)
}

func (o *ownerOnly) Symlink(c <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	if !o.ok(h) {
		return fuse.EACCES
	}
	return o.RawFileSystem.Symlink(c, h, target, name, out)
}

func (o *ownerOnly) Readlink(c <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	if !o.ok(h) {
		return nil, fuse.EACCES
	}
	return o.RawFileSystem.Readlink(c, h)
}

func (o *ownerOnly) Access(c <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	if !o.ok(&in.InHeader) {
		return fuse.EACCES
	}
	return o.RawFileSystem.Access(c, in)
}

func (o *ownerOnly) GetXAttr(c <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	if !o.ok(h) {
		return 0, fuse.EACCES
	}
	return o.RawFileSystem.GetXAttr(c, h, attr, dest)
}

func (o *ownerOnly) ListXAttr(c <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	if !o.ok(h) {
		return 0, fuse.EACCES
	}
	return o.RawFileSystem.ListXAttr(c, h, dest)
}

func (o *ownerOnly) SetXAttr(c <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	if !o.ok(&in.InHeader) {
		return fuse.EACCES
	}
	return o.RawFileSystem.SetXAttr(c, in, attr, data)
}

func (o *ownerOnly) RemoveXAttr(c <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	if !o.ok(h) {
		return fuse.EACCES
	}
	return o.RawFileSystem.RemoveXAttr(c, h, attr)
}

// serveFS mounts root at dir as go-fuse's fs.Mount does, behind ownerOnly when other users' requests
// can reach us (allow_other).
func serveFS(dir string, root fusefs.InodeEmbedder, fo *fusefs.Options) (*fuse.Server, error) {
	var raw fuse.RawFileSystem = fusefs.NewNodeFS(root, fo)
	if fo.AllowOther {
		raw = &ownerOnly{RawFileSystem: raw, uid: fo.UID}
	}
	server, err := fuse.NewServer(raw, dir, &fo.MountOptions)
	if err != nil {
		return nil, err
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, err
	}
	return server, nil
}
