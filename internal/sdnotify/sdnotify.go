// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)) by hand: readiness, stopping, free-form status and
// watchdog keep-alives, sent as datagrams to the unix socket systemd names
// in $NOTIFY_SOCKET. Without that variable (not started by systemd, or
// Type=simple) every call is a no-op that returns nil, so the daemon calls
// it unconditionally.
package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// ErrBadEnvironment is wrapped by FromEnv's error when $WATCHDOG_USEC or
// $WATCHDOG_PID cannot be parsed. The Notifier returned with it still
// works for notifications; only the watchdog is off.
var ErrBadEnvironment = errors.New("sdnotify: bad systemd environment")

// Notifier sends notifications to one systemd notification socket. A nil
// *Notifier, or one with an empty socket, is valid and does nothing. Its
// methods are safe for concurrent use: each message is one datagram on a
// freshly dialled socket, so there is no shared connection state.
type Notifier struct {
	socket   string        // path, or "@name" for the abstract namespace
	watchdog time.Duration // 0 when the watchdog is not enabled for this process
}

// New returns a Notifier for socket (a filesystem path, or "@name" for an
// abstract socket, as in $NOTIFY_SOCKET) with the given watchdog timeout
// (0: no watchdog).
func New(socket string, watchdog time.Duration) *Notifier {
	return &Notifier{socket: socket, watchdog: watchdog}
}

// FromEnv builds a Notifier from $NOTIFY_SOCKET, $WATCHDOG_USEC and
// $WATCHDOG_PID as systemd sets them. The watchdog is enabled only when
// WATCHDOG_USEC is a positive number and WATCHDOG_PID is unset or names this
// process (a child that inherited the environment must not ping for its
// parent). The variables are left in place. The returned Notifier is never
// nil; the error (wrapping ErrBadEnvironment) only reports unparsable
// watchdog variables.
func FromEnv() (*Notifier, error) {
	n := &Notifier{socket: os.Getenv("NOTIFY_SOCKET")}
	d, err := watchdogFromEnv(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
	n.watchdog = d
	return n, err
}

func watchdogFromEnv(usec, pid string, self int) (time.Duration, error) {
	if usec == "" {
		return 0, nil
	}
	u, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || u == 0 {
		return 0, fmt.Errorf("%w: WATCHDOG_USEC=%q is not a positive number of microseconds", ErrBadEnvironment, usec)
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil || p <= 0 {
			return 0, fmt.Errorf("%w: WATCHDOG_PID=%q is not a process id", ErrBadEnvironment, pid)
		}
		if p != self {
			return 0, nil // meant for another process
		}
	}
	return time.Duration(u) * time.Microsecond, nil
}

// Enabled reports whether notifications go anywhere (NOTIFY_SOCKET was set).
func (n *Notifier) Enabled() bool { return n != nil && n.socket != "" }

// WatchdogInterval returns the watchdog timeout systemd enforces
// (WatchdogSec=) and true, or 0 and false when the watchdog is off for this
// process. Keep-alives should be sent at least twice per interval.
func (n *Notifier) WatchdogInterval() (time.Duration, bool) {
	if n == nil || n.watchdog <= 0 {
		return 0, false
	}
	return n.watchdog, true
}

// Ready tells systemd start-up is complete (READY=1): with Type=notify,
// units ordered after this one start only now.
func (n *Notifier) Ready() error { return n.Send("READY=1") }

// Stopping tells systemd the service is shutting down (STOPPING=1).
func (n *Notifier) Stopping() error { return n.Send("STOPPING=1") }

// Status sets the one-line status shown by `systemctl status` (STATUS=…).
// Newlines are replaced by spaces, since one assignment is one line.
func (n *Notifier) Status(s string) error {
	return n.Send("STATUS=" + strings.NewReplacer("\n", " ", "\r", " ").Replace(s))
}

// Watchdog sends one keep-alive (WATCHDOG=1). Send it only when the service
// is known to be healthy: that is the whole point of the watchdog.
func (n *Notifier) Watchdog() error { return n.Send("WATCHDOG=1") }

// Send sends raw newline-separated assignments (e.g. "READY=1\nSTATUS=up")
// in one datagram. It returns nil without a socket, and an error naming the
// socket when the datagram could not be delivered.
func (n *Notifier) Send(state string) error {
	if !n.Enabled() {
		return nil
	}
	addr := &net.UnixAddr{Name: n.socket, Net: "unixgram"}
	if strings.HasPrefix(n.socket, "@") {
		addr.Name = "\x00" + n.socket[1:] // abstract namespace
	}
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return fmt.Errorf("sdnotify: connecting to %s: %w", n.socket, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: sending %q to %s: %w", firstLine(state), n.socket, err)
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + "…"
	}
	return s
}

// RunWatchdog keeps systemd's watchdog fed while alive says the service is
// healthy, until ctx ends. Every third of the watchdog interval it calls
// alive with a context bounded by that third; on nil it sends WATCHDOG=1,
// otherwise it sends no keep-alive, logs the error once per failure streak
// and puts it in STATUS=, so that a service stuck for a whole interval is
// killed and restarted by systemd (WatchdogSec= with Restart=). It returns
// nil at once when the watchdog is off, and nil when ctx ends; it starts no
// goroutines of its own (alive runs on the caller's goroutine).
func (n *Notifier) RunWatchdog(ctx context.Context, alive func(ctx context.Context) error, log *slog.Logger) error {
	interval, ok := n.WatchdogInterval()
	if !ok {
		return nil
	}
	if log == nil {
		log = slog.Default()
	}
	period := interval / 3
	if period <= 0 {
		period = interval
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	failing := false
	for {
		pctx, cancel := context.WithTimeout(ctx, period)
		err := alive(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err == nil:
			if failing {
				log.Info("watchdog: service alive again; keep-alives resumed")
				_ = n.Status("running")
				failing = false
			}
			if serr := n.Watchdog(); serr != nil {
				log.Warn("watchdog: keep-alive not delivered", "err", serr)
			}
		case !failing:
			failing = true
			log.Error("watchdog: service not alive; withholding keep-alives (systemd restarts it after WatchdogSec)",
				"err", err, "watchdog", interval)
			_ = n.Status("not alive: " + err.Error())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
