package fs

import fusefs "github.com/hanwen/go-fuse/v2/fs"

// Compile-time checks that each node implements what it must. go-fuse finds operations by type
// assertion at run time, so a misspelt method would silently fall back to a default (often "success"):
// these catch it at build time. Kept together so a node's capabilities read at a glance.

// Every node refuses modifications with EROFS and answers statfs (base).
var (
	_ = (fusefs.NodeSetattrer)((*base)(nil))
	_ = (fusefs.NodeMkdirer)((*base)(nil))
	_ = (fusefs.NodeMknoder)((*base)(nil))
	_ = (fusefs.NodeLinker)((*base)(nil))
	_ = (fusefs.NodeSymlinker)((*base)(nil))
	_ = (fusefs.NodeCreater)((*base)(nil))
	_ = (fusefs.NodeTmpfiler)((*base)(nil))
	_ = (fusefs.NodeUnlinker)((*base)(nil))
	_ = (fusefs.NodeRmdirer)((*base)(nil))
	_ = (fusefs.NodeRenamer)((*base)(nil))
	_ = (fusefs.NodeSetxattrer)((*base)(nil))
	_ = (fusefs.NodeRemovexattrer)((*base)(nil))
	_ = (fusefs.NodeAccesser)((*base)(nil))
	_ = (fusefs.NodeStatfser)((*base)(nil))
)

// Folders.
var (
	_ = (fusefs.NodeOnAdder)((*rootNode)(nil))
	_ = (fusefs.NodeGetattrer)((*rootNode)(nil))
	_ = (fusefs.NodeUnlinker)((*rootNode)(nil))

	_ = (fusefs.NodeGetattrer)((*staticDir)(nil))
	_ = (fusefs.NodeCreater)((*staticDir)(nil))

	_ = (fusefs.NodeLookuper)((*jobsDir)(nil))
	_ = (fusefs.NodeReaddirer)((*jobsDir)(nil))
	_ = (fusefs.NodeGetattrer)((*jobsDir)(nil))
	_ = (fusefs.NodeMkdirer)((*jobsDir)(nil))

	_ = (fusefs.NodeLookuper)((*dirNode)(nil))
	_ = (fusefs.NodeReaddirer)((*dirNode)(nil))
	_ = (fusefs.NodeGetattrer)((*dirNode)(nil))
	_ = (fusefs.NodeGetxattrer)((*dirNode)(nil))
	_ = (fusefs.NodeListxattrer)((*dirNode)(nil))
	_ = (fusefs.NodeCreater)((*dirNode)(nil))
	_ = (fusefs.NodeUnlinker)((*dirNode)(nil))
	_ = (fusefs.NodeRenamer)((*dirNode)(nil))

	_ = (fusefs.NodeLookuper)((*completedDir)(nil))
	_ = (fusefs.NodeReaddirer)((*completedDir)(nil))
	_ = (fusefs.NodeGetattrer)((*completedDir)(nil))
	_ = (fusefs.NodeLookuper)((*failedDir)(nil))
	_ = (fusefs.NodeReaddirer)((*failedDir)(nil))
	_ = (fusefs.NodeGetattrer)((*failedDir)(nil))
	_ = (fusefs.NodeLookuper)((*completedFilterDir)(nil))
	_ = (fusefs.NodeReaddirer)((*completedFilterDir)(nil))
	_ = (fusefs.NodeGetattrer)((*completedFilterDir)(nil))
	_ = (fusefs.NodeLookuper)((*byNameDir)(nil))
	_ = (fusefs.NodeReaddirer)((*byNameDir)(nil))
	_ = (fusefs.NodeGetattrer)((*byNameDir)(nil))
)

// Files, links and handles.
var (
	_ = (fusefs.NodeGetattrer)((*fileNode)(nil))
	_ = (fusefs.NodeOpener)((*fileNode)(nil))
	_ = (fusefs.NodeGetxattrer)((*fileNode)(nil))
	_ = (fusefs.NodeListxattrer)((*fileNode)(nil))
	_ = (fusefs.NodeSetattrer)((*fileNode)(nil))
	_ = (fusefs.NodeAccesser)((*fileNode)(nil))
	_ = (fusefs.NodeAccesser)((*statusFile)(nil))

	_ = (fusefs.NodeGetattrer)((*liveNode)(nil))
	_ = (fusefs.NodeOpener)((*liveNode)(nil))
	_ = (fusefs.NodeGetxattrer)((*liveNode)(nil))
	_ = (fusefs.NodeListxattrer)((*liveNode)(nil))
	_ = (fusefs.NodeSetattrer)((*liveNode)(nil))
	_ = (fusefs.NodeAccesser)((*liveNode)(nil))

	_ = (fusefs.NodeReadlinker)((*symlinkNode)(nil))
	_ = (fusefs.NodeGetattrer)((*symlinkNode)(nil))

	_ = (fusefs.NodeGetattrer)((*statusFile)(nil))
	_ = (fusefs.NodeOpener)((*statusFile)(nil))

	_ = (fusefs.FileReader)((*handle)(nil))
	_ = (fusefs.FileFlusher)((*handle)(nil))
	_ = (fusefs.FileReleaser)((*handle)(nil))
	_ = (fusefs.FileReader)((*bytesHandle)(nil))
	_ = (fusefs.FileReader)((*liveHandle)(nil))
	_ = (fusefs.FileFlusher)((*liveHandle)(nil))
	_ = (fusefs.FileReleaser)((*liveHandle)(nil))
)
