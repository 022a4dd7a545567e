package main

import "github.com/dockd/dockd/internal/storagehealth"

// storageStatus is the station's own wear on storage in the retained
// status: bytes the daemon caused to be written since it started
// (/proc/self/io write_bytes; journald's log writes are not included).
type storageStatus struct {
	WrittenBytes int64 `json:"written_bytes"`
}

func readStorageStatus() *storageStatus {
	n, err := storagehealth.WrittenBytes()
	if err != nil {
		return nil
	}
	return &storageStatus{WrittenBytes: n}
}
