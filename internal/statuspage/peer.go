package statuspage

// Who is on the other end of a connection from this box: for loopback TCP
// the owner of the client socket (from the kernel's socket table), for the
// control socket the kernel's peer credentials (SO_PEERCRED).

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// localPeerUID finds the uid owning the client end of a loopback TCP
// connection: the socket whose local address is remote (as the server sees
// the peer) and whose remote address is local (the server's end), in
// /proc/self/net/tcp or tcp6. It works on Linux for peers in the same
// network namespace, which loopback peers are.
func localPeerUID(remote, local string) (uint32, bool) {
	ra, err1 := netip.ParseAddrPort(remote)
	la, err2 := netip.ParseAddrPort(local)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	file := "/proc/self/net/tcp"
	if ra.Addr().Is6() && !ra.Addr().Is4In6() {
		file = "/proc/self/net/tcp6"
	}
	f, err := os.Open(file)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	want1, want2 := procAddr(ra), procAddr(la)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 8 || !strings.EqualFold(fs[1], want1) || !strings.EqualFold(fs[2], want2) {
			continue
		}
		uid, err := strconv.ParseUint(fs[7], 10, 32)
		if err != nil {
			return 0, false
		}
		return uint32(uid), true
	}
	return 0, false
}

// procAddr renders an address as the kernel's socket table does: the
// address as 32-bit words in host (little-endian) order, then the port.
func procAddr(ap netip.AddrPort) string {
	a := ap.Addr().Unmap()
	var b []byte
	if a.Is4() {
		v := a.As4()
		b = v[:]
	} else {
		v := a.As16()
		b = v[:]
	}
	out := make([]byte, len(b))
	for i := 0; i < len(b); i += 4 {
		out[i], out[i+1], out[i+2], out[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	return strings.ToUpper(hex.EncodeToString(out)) + fmt.Sprintf(":%04X", ap.Port())
}

// peerCred is the kernel's word on the process at the other end of a Unix
// socket connection.
type peerCred struct {
	PID      int32
	UID, GID uint32
	// Groups are the peer's supplementary groups (SO_PEERGROUPS, Linux
	// 4.13+); nil when the kernel could not say.
	Groups []uint32
	err    error
}

type peerCredKey struct{}

// withPeerCred is the http.Server ConnContext of the control socket: it
// reads SO_PEERCRED once per connection.
func withPeerCred(ctx context.Context, c net.Conn) context.Context {
	pc := peerCred{err: fmt.Errorf("not a Unix socket connection")}
	if uc, ok := c.(*net.UnixConn); ok {
		raw, err := uc.SyscallConn()
		if err == nil {
			cerr := raw.Control(func(fd uintptr) {
				cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
				if err != nil {
					pc.err = fmt.Errorf("reading SO_PEERCRED: %w", err)
					return
				}
				pc = peerCred{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}
				if g, err := peerGroups(fd); err == nil {
					pc.Groups = g
				}
			})
			if cerr != nil {
				pc.err = cerr
			}
		} else {
			pc.err = err
		}
	}
	return context.WithValue(ctx, peerCredKey{}, pc)
}

// peerGroups reads SO_PEERGROUPS: the supplementary groups the peer had
// when it connected.
func peerGroups(fd uintptr) ([]uint32, error) {
	buf := make([]uint32, 64)
	for {
		n := uint32(len(buf) * 4)
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		if e == unix.ERANGE && int(n/4) > len(buf) {
			buf = make([]uint32, n/4)
			continue
		}
		if e != 0 {
			return nil, e
		}
		return buf[:n/4], nil
	}
}

// localAllowed reports whether a peer may use the control socket: root,
// the station's own user, or a member of the station's group (primary, or
// supplementary as SO_PEERGROUPS or, failing that, /proc/PID/status list
// them; under systemd's ProtectProc only the former can be read).
func localAllowed(pc peerCred) bool {
	euid, egid := uint32(os.Geteuid()), uint32(os.Getegid())
	if pc.UID == 0 || pc.UID == euid || pc.GID == egid {
		return true
	}
	if pc.Groups != nil {
		for _, g := range pc.Groups {
			if g == egid {
				return true
			}
		}
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pc.PID))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Groups:"); ok {
			for _, g := range strings.Fields(rest) {
				if n, err := strconv.ParseUint(g, 10, 32); err == nil && uint32(n) == egid {
					return true
				}
			}
		}
	}
	return false
}

// LocalName is the principal of a local user, as the control socket names
// its peers: local:NAME(uid=N).
func LocalName(uid uint32) string {
	name := "?"
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		name = u.Username
	}
	return fmt.Sprintf("local:%s(uid=%d)", name, uid)
}
