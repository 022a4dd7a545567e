package main

import (
	"fmt"

	"github.com/dockd/dockd/internal/storagehealth"
)

// checkVolume reports what holds state_dir — filesystem, device, free
// space — and warns when it is a removable card: every scan is an fsync'd
// write there (see the README's storage wear section).
func (d *doctor) checkVolume() {
	v, err := storagehealth.Describe(d.cfg.StateDir)
	if err != nil {
		return // checkDisk has reported the missing directory
	}
	kind := "block device " + v.Device
	switch {
	case v.Device == "":
		kind = "no block device"
	case v.SDCard:
		kind = "SD card " + v.Device
	case len(v.Device) > 6 && v.Device[:6] == "mmcblk":
		kind = "eMMC " + v.Device
	}
	if v.Removable {
		kind += ", removable"
	}
	detail := fmt.Sprintf("%s on %s (%s, mounted at %s, from %s): %s free of %s",
		d.cfg.StateDir, v.FSType, kind, v.MountPoint, v.Source, humanBytes(int64(v.FreeBytes)), humanBytes(int64(v.TotalBytes)))
	switch {
	case v.FSType == "tmpfs" || v.FSType == "ramfs":
		d.add("state volume", levelWarn, detail+"; nothing here survives a power cut",
			"put state_dir on persistent storage: stored custody events must survive a reboot")
	case v.Removable || v.SDCard:
		d.add("state volume", levelWarn, detail+"; a removable card wears out under the station's fsync'd writes",
			"for a busy door put state_dir on an industrial (pSLC) card, eMMC or an SSD; see README, storage wear")
	default:
		d.add("state volume", levelPass, detail, "")
	}
}
