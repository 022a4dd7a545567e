package allowlist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	bolt "go.etcd.io/bbolt"
)

// MaxFileBytes32 is the largest allowlist.db an import may grow on a 32-bit
// system (armv7). bbolt maps the whole file into the address space: its map
// doubles up to 1 GiB and then jumps to the 2 GiB - 1 ceiling, and a 32-bit
// process (3 GiB of user address space on a 3G/1G kernel, also holding the
// program, its heap and the event buffer's map) cannot count on a free 2 GiB
// hole. The limit keeps the map at 1 GiB. A replacement holds the old and
// the new version side by side until the switch, so the largest list a
// 32-bit box can replace is about half of what fits: see README, "Allowlist",
// for rows (measured under qemu-arm: 117–140 bytes a row with two versions).
const MaxFileBytes32 int64 = 1024 << 20

// ErrFileLimit means an import stopped because allowlist.db would grow past
// the size this system can map (MaxFileBytes32 on 32-bit systems). The list
// in force is unchanged.
var ErrFileLimit = errors.New("allowlist: file would grow past what this system can map")

// defaultMaxFile is the file size limit imports enforce here: none on a
// 64-bit system.
func defaultMaxFile() int64 {
	if strconv.IntSize == 32 {
		return MaxFileBytes32
	}
	return 0
}

// WithMaxFileBytes overrides the file size an import may reach (0: no
// limit; default MaxFileBytes32 on 32-bit systems, none on 64-bit).
func WithMaxFileBytes(n int64) Option { return func(o *options) { o.maxFile = n } }

// checkFileLimit refuses to go on writing rows once the file (as this
// write transaction sees it) is past the limit.
func (s *Store) checkFileLimit(tx *bolt.Tx, rows int) error {
	if s.opts.maxFile <= 0 || tx.Size() <= s.opts.maxFile {
		return nil
	}
	return fmt.Errorf("%w: after %d rows %s is %d MiB, the limit on this %d-bit system is %d MiB; nothing was changed. Import fewer rows (README: storage wear), or use a 64-bit OS",
		ErrFileLimit, rows, s.path, tx.Size()>>20, strconv.IntSize, s.opts.maxFile>>20)
}

// syncDir fsyncs the directory holding path, so a rename in it is durable.
func syncDir(path string) {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return
	}
	d.Sync()
	d.Close()
}
