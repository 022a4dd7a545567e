package main

// The control socket: the status page's API on a Unix socket in the state
// directory, for the technician's tools on the box (dockd simulate, dockd
// light test, dockd login-link). The kernel names each caller
// (SO_PEERCRED); the file's mode (0660, the station's user and group) and
// the state directory's (0750) keep everyone else from connecting at all.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
)

// openControlSocket opens the control socket's listener (status.socket),
// replacing a stale socket file a killed station left behind.
func (d *daemon) openControlSocket() error {
	path := d.cfg.Status.ControlSocket(d.cfg.StateDir)
	if path == "" {
		return nil
	}
	if len(path) > 107 && d.cfg.Status.Socket == "" {
		// Longer than a Unix socket address can be (a deep state_dir): the
		// tools will not find the station; say so, but run.
		d.log.Warn("control socket off: its default path is too long for a Unix socket; set status.socket", "path", path)
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("control socket: creating %s: %w", filepath.Dir(path), err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return fmt.Errorf("control socket: %s exists and is not a socket (remove it, or set status.socket)", path)
		}
		// The state files are locked by this station, so no other station
		// serves this socket: it is left over from a crash.
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("control socket: removing the stale %s: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: listening on %s (set status.socket, or off): %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return fmt.Errorf("control socket: chmod %s: %w", path, err)
	}
	d.ctlLn = ln
	return nil
}

// servePage serves the status page and the control socket until ctx ends;
// it returns the first error that stopped either.
func (d *daemon) servePage(ctx context.Context) error {
	if d.ctlLn == nil {
		return d.page.Serve(ctx, d.pageLn)
	}
	if d.pageLn == nil {
		return d.page.ServeLocal(ctx, d.ctlLn)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- d.page.Serve(ctx, d.pageLn) }()
	go func() { errc <- d.page.ServeLocal(ctx, d.ctlLn) }()
	err := <-errc
	cancel()
	return errors.Join(err, <-errc)
}
