// Package rfid turns a UHF RFID reader on a serial port into a stream of
// dock.Frame values (Data: the EPC in upper-case hex; Tag: antenna, RSSI,
// phase) and dock.ReaderState changes, with the same Run shape as
// device/reader.Serial so the daemon runs both alike.
//
// Two protocols are supported: "ascii" readers that print one tag per line
// in a configurable column layout, and the ThingMagic/JADAK Mercury binary
// protocol of the M6e Nano family (see mercury.go for what is implemented
// and which protocol facts are less certain). Reads pass an RSSI threshold
// and a sliding dedupe window before they are emitted.
package rfid

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"go.bug.st/serial"

	"github.com/dockd/dockd/device/reader"
	"github.com/dockd/dockd/internal/dock"
)

// Protocol-level error kinds carried (wrapped) by the Err of down states.
// Port-level failures wrap device/reader's kinds instead (reader.ErrPortMissing,
// reader.ErrPermission, reader.ErrPortBusy, reader.ErrNotSerial,
// reader.ErrDisconnected) inside a *reader.PortError.
var (
	// ErrNoResponse: a command got no valid response within CommandTimeout
	// (wrong baud, module off, not a Mercury device).
	ErrNoResponse = errors.New("rfid module did not answer")
	// ErrStalled: the module stopped sending while it should be reading.
	ErrStalled = errors.New("rfid module stopped sending")
	// ErrAlreadyRunning is returned by Run when Run is already active.
	ErrAlreadyRunning = errors.New("rfid reader already running")
)

// StatusError is a Mercury command answered with a non-zero status word.
type StatusError struct {
	Opcode byte
	Status uint16
}

// Error implements error.
func (e *StatusError) Error() string {
	return fmt.Sprintf("mercury command 0x%02X failed with status 0x%04X", e.Opcode, e.Status)
}

// Stats are running counters of one Reader since it was created.
type Stats struct {
	Reads      uint64 // tag observations parsed (before threshold and dedupe)
	Emitted    uint64 // frames sent on the frames channel
	Duplicates uint64 // reads suppressed by the dedupe window
	BelowRSSI  uint64 // reads dropped by the RSSI threshold
	CRCErrors  uint64 // mercury frames with a bad CRC
	JunkBytes  uint64 // bytes outside any valid mercury frame
	Malformed  uint64 // CRC-valid frames or ascii lines that did not parse
	Stalls     uint64 // times the module went silent while reading
	Sessions   uint64 // successful starts (handshakes, or opens in ascii mode)
}

type counters struct {
	reads, emitted, dups, below, crc, junk, malformed, stalls, sessions atomic.Uint64
}

// Reader is one RFID reader on a serial port. ID and Stats are safe for
// concurrent use; only one Run may be active at a time.
type Reader struct {
	cfg     Config
	mode    *serial.Mode
	log     *slog.Logger
	ascii   *asciiParser
	running atomic.Bool
	c       counters
}

// New validates cfg (after defaults) and returns a reader. It does not
// touch the port. A nil log discards log output.
func New(cfg Config, log *slog.Logger) (*Reader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reader{
		cfg:  cfg,
		mode: &serial.Mode{BaudRate: cfg.Baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit},
		log:  log.With("reader", cfg.ID, "port", cfg.Port, "protocol", cfg.Protocol),
	}
	if cfg.Protocol == ProtocolASCII {
		p, err := newASCIIParser(cfg)
		if err != nil {
			return nil, err
		}
		r.ascii = p
	}
	return r, nil
}

// ID returns the reader id from the config.
func (r *Reader) ID() string { return r.cfg.ID }

// Stats returns a snapshot of the counters.
func (r *Reader) Stats() Stats {
	c := &r.c
	return Stats{
		Reads: c.reads.Load(), Emitted: c.emitted.Load(), Duplicates: c.dups.Load(),
		BelowRSSI: c.below.Load(), CRCErrors: c.crc.Load(), JunkBytes: c.junk.Load(),
		Malformed: c.malformed.Load(), Stalls: c.stalls.Load(), Sessions: c.sessions.Load(),
	}
}

// Run opens the port, starts the reader (mercury: stop any old inventory,
// check the version, set Gen2, antenna, region and power, start continuous
// reading) and sends one dock.Frame per admitted tag read, in the order the
// reader reported them. It sends a dock.ReaderState on states (may be nil)
// at every up/down change; up is reported once the reader is started.
//
// Run never returns because the reader failed: when the port cannot be
// opened, vanishes, a command goes unanswered or fails, or the module stops
// sending for StallTimeout, it reports down (Err wrapping the cause, see
// ErrNoResponse, ErrStalled, *StatusError and *reader.PortError), waits
// with jittered exponential backoff and starts over.
//
// Sends block until received or ctx ends. Run returns ctx.Err() when ctx
// ends, after asking a mercury module to stop reading, closing the port and
// stopping every goroutine it started. Any other error is misuse: a nil
// frames channel or a concurrent Run.
func (r *Reader) Run(ctx context.Context, frames chan<- dock.Frame, states chan<- dock.ReaderState) error {
	if frames == nil {
		return fmt.Errorf("rfid reader %s: Run: frames channel is nil", r.cfg.ID)
	}
	if !r.running.CompareAndSwap(false, true) {
		return fmt.Errorf("rfid reader %s: Run: %w", r.cfg.ID, ErrAlreadyRunning)
	}
	defer r.running.Store(false)

	rep := reader.StateReporter{ID: r.cfg.ID, States: states}
	bo := reader.Backoff{Min: r.cfg.MinBackoff, Max: r.cfg.MaxBackoff}
	dd := reader.NewDeduper(r.cfg.DedupeWindow)
	var lastErr string
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := r.session(ctx, frames, &rep, dd, &bo)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		level := slog.LevelWarn
		if err.Error() == lastErr {
			level = slog.LevelDebug // the same failure again while waiting
		}
		lastErr = err.Error()
		r.log.Log(ctx, level, "rfid reader down", "err", err)
		if err := rep.Send(ctx, false, "", err); err != nil {
			return err
		}
		if err := bo.Wait(ctx); err != nil {
			return err
		}
	}
}

// link is one open port with a goroutine feeding its bytes to chunks.
type link struct {
	port   serial.Port
	tty    string
	chunks chan []byte
	errc   chan error
}

// session opens the port, starts the reader and serves it until it fails
// or ctx ends. It closes the port and joins its goroutines before returning.
func (r *Reader) session(ctx context.Context, frames chan<- dock.Frame, rep *reader.StateReporter, dd *reader.Deduper, bo *reader.Backoff) error {
	tty, err := filepath.EvalSymlinks(r.cfg.Port)
	if err != nil {
		return &reader.PortError{Op: "resolve", Path: r.cfg.Port, Kind: openKind(err), Err: err}
	}
	port, err := serial.Open(tty, r.mode)
	if err != nil {
		return &reader.PortError{Op: "open", Path: r.cfg.Port, TTY: tty, Kind: openKind(err), Err: err}
	}
	// Bytes queued before we opened (a module still streaming to a closed
	// port) belong to nobody; drop them.
	if err := port.ResetInputBuffer(); err != nil {
		r.log.Debug("flushing input", "tty", tty, "err", err)
	}
	l := &link{port: port, tty: tty, chunks: make(chan []byte, 16), errc: make(chan error, 1)}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := port.Read(buf)
			if n > 0 {
				select {
				case l.chunks <- append([]byte(nil), buf[:n]...):
				case <-stop:
					return
				}
			}
			if err == nil && n == 0 {
				err = errors.New("zero-length read")
			}
			if err != nil {
				l.errc <- &reader.PortError{Op: "read", Path: r.cfg.Port, TTY: tty, Kind: reader.ErrDisconnected, Err: err}
				return
			}
		}
	}()
	defer func() {
		close(stop)
		if err := port.Close(); err != nil {
			r.log.Debug("closing port", "tty", tty, "err", err)
		}
		<-done
	}()

	if r.cfg.Protocol == ProtocolASCII {
		return r.serveASCII(ctx, l, frames, rep, dd, bo)
	}
	return r.serveMercury(ctx, l, frames, rep, dd, bo)
}

// up marks a successful start.
func (r *Reader) up(ctx context.Context, l *link, rep *reader.StateReporter, bo *reader.Backoff) error {
	bo.Reset()
	r.c.sessions.Add(1)
	r.log.Info("rfid reader up", "tty", l.tty)
	return rep.Send(ctx, true, l.tty, nil)
}

func (r *Reader) serveASCII(ctx context.Context, l *link, frames chan<- dock.Frame, rep *reader.StateReporter, dd *reader.Deduper, bo *reader.Backoff) error {
	suffix, _ := reader.ParseSuffix(r.cfg.Suffix) // validated in New
	fr, err := reader.NewFramer(suffix, []byte(r.cfg.Prefix), r.cfg.MaxLine)
	if err != nil {
		return err
	}
	if err := r.up(ctx, l, rep, bo); err != nil {
		return err
	}
	var lines []dock.Frame
	emit := func(data []byte, ferr error) {
		if ferr != nil {
			r.c.malformed.Add(1)
			r.log.Warn("dropped oversize line", "tty", l.tty, "err", ferr)
			return
		}
		epc, tr, hasRSSI, err := r.ascii.parse(string(data))
		if err != nil {
			r.c.malformed.Add(1)
			r.log.Warn("dropped unparseable line", "tty", l.tty, "line", string(data), "err", err)
			return
		}
		r.c.reads.Add(1)
		if f, ok := r.admit(dd, epc, tr, hasRSSI, time.Now()); ok {
			lines = append(lines, f)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-l.errc:
			return err
		case b := <-l.chunks:
			fr.Feed(b, emit)
			if err := r.send(ctx, frames, lines); err != nil {
				return err
			}
			clear(lines)
			lines = lines[:0]
		}
	}
}

// admit applies the RSSI threshold and the dedupe window to one read.
func (r *Reader) admit(dd *reader.Deduper, epc string, tr dock.TagRead, hasRSSI bool, at time.Time) (dock.Frame, bool) {
	if r.cfg.MinRSSI != 0 && hasRSSI && tr.RSSI < r.cfg.MinRSSI {
		r.c.below.Add(1)
		return dock.Frame{}, false
	}
	if !dd.Admit(epc, at) {
		r.c.dups.Add(1)
		return dock.Frame{}, false
	}
	t := tr
	return dock.Frame{Reader: r.cfg.ID, Data: []byte(epc), At: at, Tag: &t}, true
}

func (r *Reader) send(ctx context.Context, frames chan<- dock.Frame, out []dock.Frame) error {
	for _, f := range out {
		select {
		case frames <- f:
			r.c.emitted.Add(1)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// mercury is the state of one Mercury session.
type mercury struct {
	r       *Reader
	l       *link
	sp      *Splitter
	pending []MercuryFrame
}

func (m *mercury) write(op byte, data []byte) error {
	f, err := EncodeCommand(op, data)
	if err != nil {
		return err
	}
	if _, err := m.l.port.Write(f); err != nil {
		return &reader.PortError{Op: "write", Path: m.r.cfg.Port, TTY: m.l.tty, Kind: reader.ErrDisconnected, Err: err}
	}
	return nil
}

// feed splits b into pending frames and folds the splitter's error counts
// into the reader's stats.
func (m *mercury) feed(b []byte) {
	crc, junk := m.sp.CRCErrors, m.sp.JunkBytes
	m.sp.Feed(b, func(f MercuryFrame) { m.pending = append(m.pending, f) })
	if d := m.sp.CRCErrors - crc; d > 0 {
		m.r.c.crc.Add(d)
		m.r.log.Warn("mercury frame with bad CRC skipped", "tty", m.l.tty, "crc_errors", m.sp.CRCErrors)
	}
	if d := m.sp.JunkBytes - junk; d > 0 {
		m.r.c.junk.Add(d)
	}
}

// command sends op and waits for its response, discarding other frames
// (tag reads still streaming from an earlier session).
func (m *mercury) command(ctx context.Context, op byte, data []byte) (MercuryFrame, error) {
	if err := m.write(op, data); err != nil {
		return MercuryFrame{}, err
	}
	t := time.NewTimer(m.r.cfg.CommandTimeout)
	defer t.Stop()
	for {
		for len(m.pending) > 0 {
			f := m.pending[0]
			m.pending = m.pending[1:]
			if f.Opcode != op {
				continue
			}
			if f.Status != 0 {
				return f, fmt.Errorf("mercury command 0x%02X: %w", op, &StatusError{Opcode: op, Status: f.Status})
			}
			return f, nil
		}
		select {
		case <-ctx.Done():
			return MercuryFrame{}, ctx.Err()
		case err := <-m.l.errc:
			return MercuryFrame{}, err
		case b := <-m.l.chunks:
			m.feed(b)
		case <-t.C:
			return MercuryFrame{}, fmt.Errorf("mercury command 0x%02X on %s: %w within %v", op, m.l.tty, ErrNoResponse, m.r.cfg.CommandTimeout)
		}
	}
}

func (r *Reader) serveMercury(ctx context.Context, l *link, frames chan<- dock.Frame, rep *reader.StateReporter, dd *reader.Deduper, bo *reader.Backoff) error {
	m := &mercury{r: r, l: l, sp: NewSplitter(true)}
	// Stop an inventory left running by an earlier session; the module may
	// or may not answer, and its answer is skipped like any other frame.
	if err := m.write(OpMultiProtocolOp, stopReadingData); err != nil {
		return err
	}
	v, err := m.command(ctx, OpVersion, nil)
	if err != nil {
		return err
	}
	r.log.Debug("mercury version", "tty", l.tty, "version", hex.EncodeToString(v.Data))
	power := uint16(r.cfg.ReadPowerCentiDBm)
	steps := []struct {
		op   byte
		data []byte
	}{
		{OpSetTagProtocol, []byte{0x00, protocolGen2}},
		{OpSetAntennaPort, []byte{0x01, 0x01}},
		{OpSetRegion, []byte{Regions[r.cfg.Region]}},
		{OpSetReadTxPower, []byte{byte(power >> 8), byte(power)}},
		{OpSetReaderConfig, []byte{0x01, 0x0C, 0x00}}, // read filter off: report every sighting; we dedupe
		{OpMultiProtocolOp, startReadingData(DefaultMetadata)},
	}
	for _, s := range steps {
		if _, err := m.command(ctx, s.op, s.data); err != nil {
			return err
		}
	}
	defer func() {
		// Best effort: leave the module idle rather than streaming into a
		// closed port.
		_ = m.write(OpMultiProtocolOp, stopReadingData)
	}()
	if err := r.up(ctx, l, rep, bo); err != nil {
		return err
	}

	stall := time.NewTimer(r.cfg.StallTimeout)
	defer stall.Stop()
	var out []dock.Frame
	for {
		if len(m.pending) > 0 {
			stall.Reset(r.cfg.StallTimeout)
			at := time.Now()
			for _, f := range m.pending {
				out = r.mercuryFrame(f, l.tty, dd, at, out)
			}
			clear(m.pending)
			m.pending = m.pending[:0]
			if err := r.send(ctx, frames, out); err != nil {
				return err
			}
			clear(out)
			out = out[:0]
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-l.errc:
			return err
		case b := <-l.chunks:
			m.feed(b)
		case <-stall.C:
			r.c.stalls.Add(1)
			return fmt.Errorf("mercury reader on %s: %w: no valid frame for %v", l.tty, ErrStalled, r.cfg.StallTimeout)
		}
	}
}

// mercuryFrame handles one frame received while reading, appending
// admitted tag reads to out.
func (r *Reader) mercuryFrame(f MercuryFrame, tty string, dd *reader.Deduper, at time.Time, out []dock.Frame) []dock.Frame {
	if !IsTagFrame(f) {
		if f.Opcode == OpReadTagMultiple && f.Status != 0 && f.Status != statusNoTagsFound {
			r.log.Debug("mercury status frame", "tty", tty, "status", fmt.Sprintf("0x%04X", f.Status))
		}
		return out // keep-alive, statistics or a late command response
	}
	tags, err := ParseTagFrame(f)
	if err != nil {
		r.c.malformed.Add(1)
		r.log.Warn("malformed mercury tag frame skipped", "tty", tty, "err", err, "frame", hex.EncodeToString(f.Raw))
		return out
	}
	for _, t := range tags {
		r.c.reads.Add(1)
		tr := dock.TagRead{Antenna: t.Antenna, RSSI: t.RSSI, Phase: t.Phase}
		if fr, ok := r.admit(dd, hexUpper(t.EPC), tr, t.HasRSSI, at); ok {
			out = append(out, fr)
		}
	}
	return out
}

func hexUpper(b []byte) string {
	const digits = "0123456789ABCDEF"
	s := make([]byte, 2*len(b))
	for i, c := range b {
		s[2*i], s[2*i+1] = digits[c>>4], digits[c&0x0F]
	}
	return string(s)
}

// openKind classifies an error from resolving or opening a port into one
// of device/reader's kinds, so callers branch the same way for both.
func openKind(err error) error {
	var pe *serial.PortError
	if errors.As(err, &pe) {
		switch pe.Code() {
		case serial.PortNotFound:
			return reader.ErrPortMissing
		case serial.PermissionDenied:
			return reader.ErrPermission
		case serial.PortBusy:
			return reader.ErrPortBusy
		case serial.PortClosed:
			return reader.ErrDisconnected
		}
		return reader.ErrNotSerial
	}
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENXIO), errors.Is(err, syscall.ENODEV):
		return reader.ErrPortMissing
	case errors.Is(err, fs.ErrPermission):
		return reader.ErrPermission
	case errors.Is(err, syscall.EBUSY):
		return reader.ErrPortBusy
	case errors.Is(err, syscall.EIO):
		return reader.ErrDisconnected
	}
	return reader.ErrNotSerial
}
