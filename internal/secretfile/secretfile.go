// Package secretfile checks that a file holding a secret (a password, a
// private key) is the station's alone before it is used: a regular file,
// owned by the service user or root, with no permission bits for group or
// others. A secret another local account can read is a secret no more, so
// `dockd run`, `dockd check-config` and `dockd doctor` all refuse it, with
// the commands that fix it in the message.
package secretfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// ServiceUser is the account the packaged service runs as (systemd/dockd.service).
const ServiceUser = "dockd"

// ErrInsecure is wrapped by every *Error: the file is not private enough.
var ErrInsecure = errors.New("secret file is not private")

// Error is a secret file that must not be used, and why.
type Error struct {
	Key  string      // config key naming the file, e.g. mqtt.password_file
	Path string      // the file
	Mode fs.FileMode // its permission bits
	UID  int         // its owner
	Why  string      // what is wrong
	Fix  string      // shell commands that fix it
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %s: %s; fix: %s", e.Key, e.Path, e.Why, e.Fix)
}

// Unwrap makes errors.Is(err, ErrInsecure) true.
func (e *Error) Unwrap() error { return ErrInsecure }

// Owners are the accounts a secret file may belong to: root, the process's
// effective user, and the service user when that account exists.
func Owners() (uids []int, fixOwner string) {
	uids = []int{0, os.Geteuid()}
	fixOwner = strconv.Itoa(os.Geteuid())
	if u, err := user.LookupId(fixOwner); err == nil {
		fixOwner = u.Username
	}
	if u, err := user.Lookup(ServiceUser); err == nil {
		if id, err := strconv.Atoi(u.Uid); err == nil {
			uids = append(uids, id)
			fixOwner = ServiceUser
		}
	}
	return uids, fixOwner
}

// Check returns nil when path (after symlinks) is a regular file owned by
// one of Owners with no group or other permission bits. Otherwise it
// returns an *Error (wrapping ErrInsecure) naming key, the file, what is
// wrong and the fix, or the stat error wrapped with key and path.
func Check(key, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s %s: %w", key, path, err)
	}
	uids, owner := Owners()
	fix := fmt.Sprintf("chown %s %s && chmod 0600 %s", owner, path, path)
	e := &Error{Key: key, Path: path, Mode: fi.Mode().Perm(), UID: -1, Fix: fix}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.UID = int(st.Uid)
	}
	switch {
	case !fi.Mode().IsRegular():
		e.Why, e.Fix = "not a regular file", "point "+key+" at the file itself"
		return e
	case fi.Mode().Perm()&0o077 != 0:
		e.Why = fmt.Sprintf("mode %04o lets group or others read or change it (want 0600 or 0400)", fi.Mode().Perm())
		return e
	}
	for _, id := range uids {
		if e.UID == id {
			return nil
		}
	}
	e.Why = fmt.Sprintf("owned by uid %d, not by root or the service user", e.UID)
	return e
}
