// Package reader turns a serial barcode scanner into a stream of dock.Frame
// values and dock.ReaderState changes. The port is opened with
// go.bug.st/serial; a /dev/serial/by-id symlink is re-resolved at every
// reopen, so a scanner that is unplugged and plugged back (and comes back
// as a different /dev/ttyUSBn) is picked up again without restarting.
package reader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.bug.st/serial"

	"github.com/dockd/dockd/internal/dock"
)

// readBufSize is how many bytes one read from the port may return.
const readBufSize = 4096

// ErrAlreadyRunning is returned by Run when Run is already active on the
// same Serial.
var ErrAlreadyRunning = errors.New("reader already running")

// Serial is one scanner on a serial port. Its methods are safe for
// concurrent use, but only one Run may be active at a time.
type Serial struct {
	cfg     Config
	mode    *serial.Mode
	suffix  Suffix
	log     *slog.Logger
	running atomic.Bool
}

// NewSerial validates cfg (after defaults) and returns a reader. It does
// not touch the port; Run does. A nil log discards log output.
func NewSerial(cfg Config, log *slog.Logger) (*Serial, error) {
	cfg = cfg.withDefaults()
	mode, err := cfg.mode()
	if err != nil {
		return nil, err
	}
	suffix, err := ParseSuffix(cfg.Suffix)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Serial{
		cfg:    cfg,
		mode:   mode,
		suffix: suffix,
		log:    log.With("reader", cfg.ID, "port", cfg.Port),
	}, nil
}

// ID returns the reader id from the config.
func (r *Serial) ID() string { return r.cfg.ID }

// Run opens the port, reads frames and sends them on frames in the order
// the scanner sent them. It sends a dock.ReaderState on states (which may
// be nil) at every up/down change; the first attempt always reports one.
//
// Run never returns because the port failed: when the port cannot be
// opened, errors or vanishes it reports down (Err wrapping one of
// ErrPortMissing, ErrPermission, ErrPortBusy, ErrNotSerial or
// ErrDisconnected), waits with jittered exponential backoff between
// MinBackoff and MaxBackoff, and resumes when the path comes back. A
// partial frame pending at a disconnect is dropped.
//
// Sends block until received or ctx ends; a slow consumer stalls reading
// (the kernel buffers, then the scanner's flow control or loss applies).
// Run returns ctx.Err() when ctx ends, after closing the port (a blocked
// read is interrupted) and stopping every goroutine it started. It returns
// another error only for misuse: a nil frames channel or a concurrent Run.
func (r *Serial) Run(ctx context.Context, frames chan<- dock.Frame, states chan<- dock.ReaderState) error {
	if frames == nil {
		return fmt.Errorf("reader %s: Run: frames channel is nil", r.cfg.ID)
	}
	if !r.running.CompareAndSwap(false, true) {
		return fmt.Errorf("reader %s: Run: %w", r.cfg.ID, ErrAlreadyRunning)
	}
	defer r.running.Store(false)

	framer, err := NewFramer(r.suffix, []byte(r.cfg.Prefix), r.cfg.MaxFrame)
	if err != nil {
		return err // unreachable: the config was validated
	}
	rep := StateReporter{ID: r.cfg.ID, States: states}
	bo := Backoff{Min: r.cfg.MinBackoff, Max: r.cfg.MaxBackoff}
	var lastKind error // kind of the last open failure, to log repeats quietly

	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		port, tty, err := r.open()
		if err != nil {
			var pe *PortError
			kind := err
			if errors.As(err, &pe) {
				kind = pe.Kind
			}
			level := slog.LevelDebug
			if kind != lastKind {
				level = slog.LevelWarn
				lastKind = kind
			}
			r.log.Log(ctx, level, "reader port unavailable", "err", err)
			if err := rep.Send(ctx, false, "", err); err != nil {
				return err
			}
			if err := bo.Wait(ctx); err != nil {
				return err
			}
			continue
		}
		lastKind = nil
		bo.Reset()
		r.log.Info("reader up", "tty", tty)
		err = r.serve(ctx, port, tty, framer, frames, &rep)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.log.Warn("reader down", "tty", tty, "err", err)
		if err := rep.Send(ctx, false, "", err); err != nil {
			return err
		}
		if err := bo.Wait(ctx); err != nil {
			return err
		}
	}
}

// open resolves the configured path and opens the device it names.
func (r *Serial) open() (serial.Port, string, error) {
	tty, err := filepath.EvalSymlinks(r.cfg.Port)
	if err != nil {
		return nil, "", &PortError{Op: "resolve", Path: r.cfg.Port, Kind: openKind(err), Err: err}
	}
	port, err := serial.Open(tty, r.mode)
	if err != nil {
		return nil, "", &PortError{Op: "open", Path: r.cfg.Port, TTY: tty, Kind: openKind(err), Err: serialCause(err)}
	}
	return port, tty, nil
}

// serve reports up, then reads port until it fails or ctx ends. It always
// closes port before returning and leaves no goroutine behind.
func (r *Serial) serve(ctx context.Context, port serial.Port, tty string, framer *Framer, frames chan<- dock.Frame, rep *StateReporter) error {
	stop := make(chan struct{})
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		select {
		case <-ctx.Done():
		case <-stop:
		}
		// Close wakes a Read blocked in the serial library.
		if err := port.Close(); err != nil {
			r.log.Debug("closing port", "tty", tty, "err", err)
		}
	}()
	defer func() {
		close(stop)
		<-closed
	}()

	framer.Reset()
	defer func() {
		if n := framer.Buffered(); n > 0 {
			r.log.Debug("dropping partial frame", "tty", tty, "bytes", n)
		}
	}()
	if err := rep.Send(ctx, true, tty, nil); err != nil {
		return err
	}

	buf := make([]byte, readBufSize)
	var out []dock.Frame
	emit := func(data []byte, ferr error) {
		if ferr != nil {
			r.log.Warn("discarded oversize frame", "tty", tty, "err", ferr)
		}
		out = append(out, dock.Frame{Reader: r.cfg.ID, Data: data, Err: ferr})
	}
	for {
		n, err := port.Read(buf)
		if n > 0 {
			at := time.Now()
			framer.Feed(buf[:n], emit)
			for i := range out {
				out[i].At = at
				select {
				case frames <- out[i]:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			clear(out)
			out = out[:0]
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return &PortError{Op: "read", Path: r.cfg.Port, TTY: tty, Kind: ErrDisconnected, Err: err}
		}
		if n == 0 {
			// Without a read timeout the library never returns (0, nil);
			// treat it as a dead port rather than spin.
			return &PortError{Op: "read", Path: r.cfg.Port, TTY: tty, Kind: ErrDisconnected, Err: errors.New("zero-length read")}
		}
	}
}
