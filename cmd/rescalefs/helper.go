package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// rescalefs as a mount helper. `mount -t fuse.rescalefs SOURCE DIR -o OPTS` and an /etc/fstab line
//
//	default  /home/me/rescale  fuse.rescalefs  noauto,user_id=...,cache_dir=/var/cache/rescalefs  0 0
//
// go through fuse3's mount.fuse3, which runs `rescalefs SOURCE DIR -o OPTS` (rescalefs found on PATH,
// through /bin/sh). SOURCE names the apiconfig profile; OPTS mixes rescalefs's own settings, written as
// mount options (cache_dir=..., poll=30s, direct_reads), with FUSE and generic mount options (ro,
// allow_other, nodev, ...), which pass through to the mount. The helper returns once mounted, as mount
// expects; the mount serves in the background, logging to --log-file.

// defaultSource is the SOURCE meaning "credentials as `rescalefs mount` finds them" (flags, environment,
// then the [default] profile); any other SOURCE is a profile name.
const defaultSource = "rescalefs"

// helperDropped are options meant for mount(8), systemd or fstab itself, never for the file system;
// and dev and suid, which mount.fuse3 adds by itself for root (mount's defaults): outputs of the platform
// are never device nodes or set-uid programs, so the mount stays nodev,nosuid.
var helperDropped = map[string]bool{"defaults": true, "auto": true, "noauto": true, "nofail": true, "_netdev": true,
	"user": true, "users": true, "owner": true, "group": true, "dev": true, "suid": true}

// helperRefused are mount flags that must not come from mount options: a key in /etc/fstab or in the
// process list is visible to every user; foreground and option are the helper's own business.
var helperRefused = map[string]string{
	"api-key":    "the API key never goes in mount options (they are world-readable); use the profile's apiconfig",
	"foreground": "a mount helper returns once mounted; use `rescalefs mount --foreground` under systemd",
	"option":     "pass FUSE options directly, as -o allow_other",
}

// isMountHelperCall: mount.fuse3 passes SOURCE and an absolute MOUNTPOINT before its -o; no command is
// spelled like that.
func isMountHelperCall(args []string) bool {
	return len(args) >= 2 && !strings.HasPrefix(args[0], "-") && filepath.IsAbs(args[1])
}

// runMountHelper turns `rescalefs SOURCE MOUNTPOINT [-o OPTS]...` into `rescalefs mount`.
func runMountHelper(args []string, stdout, stderr io.Writer) int {
	mountArgs, err := helperMountArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "rescalefs (mount helper): %v\n", err)
		return exitUsage
	}
	return runMount(mountArgs, stdout, stderr)
}

func helperMountArgs(args []string) ([]string, error) {
	source, mountpoint := args[0], args[1]
	var opts []string
	for rest := args[2:]; len(rest) > 0; rest = rest[1:] {
		switch a := rest[0]; {
		case a == "-o" && len(rest) > 1:
			opts = append(opts, strings.Split(rest[1], ",")...)
			rest = rest[1:]
		case strings.HasPrefix(a, "-o"):
			opts = append(opts, strings.Split(a[2:], ",")...)
		case a == "-n" || a == "-v" || a == "-s":
			// mount(8)'s "no mtab", verbose and sloppy: nothing to do for a FUSE file system.
		default:
			return nil, fmt.Errorf("unexpected argument %q after SOURCE MOUNTPOINT (want -o OPTIONS)", a)
		}
	}
	var c mountConfig
	fl := newMountFlags(&c)
	var out []string
	if source != defaultSource {
		out = append(out, "--profile", source)
	}
	var fuseOpts []string
	for _, o := range opts {
		name, value, hasValue := strings.Cut(strings.TrimSpace(o), "=")
		flagName := strings.ReplaceAll(name, "_", "-")
		switch {
		case name == "" || helperDropped[name] || strings.HasPrefix(name, "x-") || name == "comment":
			continue
		case helperRefused[flagName] != "":
			return nil, fmt.Errorf("option %s: %s", name, helperRefused[flagName])
		}
		f := fl.Lookup(flagName)
		if f == nil || strings.HasPrefix(name, "_") {
			fuseOpts = append(fuseOpts, o) // allow_other, ro, nodev, default_permissions, ...
			continue
		}
		if !hasValue && f.NoOptDefVal == "" {
			return nil, fmt.Errorf("option %s needs a value, as %s=VALUE", name, name)
		}
		if hasValue {
			out = append(out, "--"+flagName+"="+value)
		} else {
			out = append(out, "--"+flagName)
		}
	}
	if len(fuseOpts) > 0 {
		out = append(out, "-o", strings.Join(fuseOpts, ","))
	}
	return append(out, "--", mountpoint), nil
}
