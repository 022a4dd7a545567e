// Package storagehealth reads what the station knows about its own wear on
// storage: the bytes this process has caused to be written (/proc/self/io)
// and what kind of volume holds the state directory (filesystem, free
// space, block device, whether the device is removable, as an SD card is).
// Linux only; elsewhere the readers return errors.
package storagehealth

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNoCounter means the kernel does not expose per-process I/O accounting
// (no /proc/self/io, e.g. CONFIG_TASK_IO_ACCOUNTING off).
var ErrNoCounter = errors.New("storagehealth: /proc/self/io not available")

// WrittenBytes returns write_bytes from /proc/self/io: the bytes this
// process has caused to be sent to storage since it started (page-cache
// pages it dirtied, whether flushed by its own fsync or by writeback).
// Logs written by journald are not counted (another process).
func WrittenBytes() (int64, error) {
	return writtenBytes("/proc/self/io")
}

func writtenBytes(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNoCounter, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "write_bytes:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("reading %s: write_bytes %q: %w", path, v, err)
			}
			return n, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	return 0, fmt.Errorf("%w: %s has no write_bytes line", ErrNoCounter, path)
}

// Volume describes the filesystem and device that hold a directory.
type Volume struct {
	Path       string // the directory asked about
	FSType     string // e.g. ext4, f2fs, tmpfs ("" if unknown)
	Source     string // mount source, e.g. /dev/mmcblk0p2
	MountPoint string
	Device     string // block device name in /sys/block, e.g. mmcblk0 ("" if none)
	Removable  bool   // /sys/block/DEV/removable is 1 (SD card slot, USB stick)
	SDCard     bool   // an MMC/SD device (mmcblk) that is not eMMC, as far as /sys tells
	FreeBytes  uint64 // available to unprivileged users
	TotalBytes uint64
}

// Describe reports the volume holding dir. Fields the system does not
// tell stay empty; an error only when dir cannot be examined at all.
func Describe(dir string) (Volume, error) {
	v := Volume{Path: dir}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return v, fmt.Errorf("examining the volume of %s: %w", dir, err)
	}
	v.FreeBytes = st.Bavail * uint64(st.Bsize)
	v.TotalBytes = st.Blocks * uint64(st.Bsize)
	abs, err := filepath.Abs(dir)
	if err != nil {
		return v, nil
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	v.MountPoint, v.Source, v.FSType = mountOf(abs)
	var sst unix.Stat_t
	if err := unix.Stat(abs, &sst); err == nil {
		v.Device = blockDevice(unix.Major(uint64(sst.Dev)), unix.Minor(uint64(sst.Dev)))
	}
	if v.Device != "" {
		if b, err := os.ReadFile(filepath.Join("/sys/block", v.Device, "removable")); err == nil {
			v.Removable = strings.TrimSpace(string(b)) == "1"
		}
		if strings.HasPrefix(v.Device, "mmcblk") {
			t, _ := os.ReadFile(filepath.Join("/sys/block", v.Device, "device", "type"))
			v.SDCard = strings.TrimSpace(string(t)) != "MMC" // "SD" for cards; eMMC reports "MMC"
		}
	}
	return v, nil
}

// mountOf finds the longest mount point in /proc/self/mounts that contains
// path.
func mountOf(path string) (mountPoint, source, fsType string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "", "", ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		mp := unescapeMount(f[1])
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(mountPoint) {
			mountPoint, source, fsType = mp, f[0], f[2]
		}
	}
	return mountPoint, source, fsType
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	if u, err := strconv.Unquote(`"` + strings.ReplaceAll(s, `"`, `\"`) + `"`); err == nil {
		return u
	}
	return s
}

// blockDevice maps a device number to its whole-disk name in /sys/block
// (a partition's parent), "" when it is not a block device (tmpfs, overlay).
func blockDevice(major, minor uint32) string {
	link, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", major, minor))
	if err != nil {
		return ""
	}
	p := filepath.Join("/sys/dev/block", link)
	if _, err := os.Stat(filepath.Join(p, "partition")); err == nil {
		p = filepath.Dir(p)
	}
	return filepath.Base(p)
}
