package main

// Commands from central: the daemon's Executor for internal/command, and
// the service that takes command messages off the uplink's receive
// goroutine, runs them one at a time and publishes the replies.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/dockd/dockd/internal/allowlist"
	"github.com/dockd/dockd/internal/command"
	"github.com/dockd/dockd/internal/custody"
	"github.com/dockd/dockd/internal/dock"
)

// shipmentDesk opens and closes expected shipments at a door. The
// allowlist owns shipments; the lead wires its implementation here.
type shipmentDesk interface {
	Shipment(open bool, door string, s command.Shipment) error
}

// daemonExecutor carries out central's commands on a running daemon. Its
// methods are safe for concurrent use (each delegates to a part that is).
type daemonExecutor struct {
	d *daemon
	// reload re-reads the config file and applies what can change without
	// a restart; nil answers reload-config with unsupported.
	reload func() error
	// ships handles open-shipment/close-shipment; nil answers unsupported.
	ships shipmentDesk
	// audit knows the id of the command being run, for its record.
	audit commandAudit
}

var _ command.Executor = (*daemonExecutor)(nil)

// SetDirection switches the door and republishes the retained status so
// central sees the new direction at once.
func (x *daemonExecutor) SetDirection(dir dock.Direction) error {
	if err := x.d.setDirection(context.Background(), dir, x.audit.record()); err != nil {
		return &command.Error{Code: command.CodeInvalidArgs, Msg: err.Error()}
	}
	x.refreshStatus()
	return nil
}

// LightTest runs the stack light's lamp test; it returns when the test is
// done or ctx ends.
func (x *daemonExecutor) LightTest(ctx context.Context) error {
	if err := x.d.light.Test(ctx); err != nil {
		return fmt.Errorf("lamp test: %w", err)
	}
	rec := x.audit.record()
	rec.Action, rec.Detail = actLightTest, "lamp test by central's command"
	x.d.recordOperator(ctx, rec)
	return nil
}

// ReloadConfig calls the configured reload function.
func (x *daemonExecutor) ReloadConfig() error {
	if x.reload == nil {
		return fmt.Errorf("reload-config: %w", command.ErrUnsupported)
	}
	if err := x.d.reloadAudited(context.Background(), x.audit.record(), x.reload); err != nil {
		return fmt.Errorf("reloading the config: %w", err)
	}
	x.refreshStatus()
	return nil
}

// Shipment opens or closes s at this door; an open without direction takes
// the door's current one.
func (x *daemonExecutor) Shipment(open bool, s command.Shipment) error {
	if x.ships == nil {
		return fmt.Errorf("shipments: %w", command.ErrUnsupported)
	}
	if open && s.Direction == "" {
		s.Direction = x.d.station.Direction()
	}
	if err := x.ships.Shipment(open, x.d.cfg.Station.Door, s); err != nil {
		return fmt.Errorf("shipment %q: %w", s.ID, err)
	}
	rec := x.audit.record()
	rec.Action, rec.Shipment = actShipmentClose, s.ID
	rec.Detail = fmt.Sprintf("shipment %s closed", s.ID)
	if open {
		rec.Action = actShipmentOpen
		rec.Detail = fmt.Sprintf("shipment %s opened for %s with %d line(s)", s.ID, s.Direction, len(s.Lines))
	}
	x.d.recordOperator(context.Background(), rec)
	return nil
}

// Status returns the online status (the retained status payload) and
// republishes it.
func (x *daemonExecutor) Status() any {
	st := x.d.status("online")
	x.refreshStatus()
	return st
}

func (x *daemonExecutor) refreshStatus() { x.d.refreshStatus() }

// refreshStatus republishes the retained status (a direction change shows
// at central at once).
func (d *daemon) refreshStatus() {
	if d.up != nil {
		d.publishStatus("online")
	}
}

// replyPublisher publishes one command reply (QoS 1, not retained) and
// returns once the broker acknowledged it or ctx ended.
type replyPublisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// commandQueue is how many command messages may wait for the worker;
// more are dropped (central times out and resends with the same id, which
// is idempotent).
const commandQueue = 64

type commandMsg struct {
	topic    string
	payload  []byte
	retained bool
	size     int // the payload's size when it was too large to copy (payload nil)
}

// commandService runs central's commands one at a time, in arrival order,
// on its own goroutine, and publishes each reply.
type commandService struct {
	// audit, when set, learns each command's id before it runs.
	audit      *commandAudit
	h          *command.Handler
	pub        replyPublisher
	log        *slog.Logger
	in         chan commandMsg
	maxPayload int // larger payloads are not copied (ReceiveMessage)
}

func newCommandService(h *command.Handler, pub replyPublisher, log *slog.Logger) *commandService {
	return &commandService{h: h, pub: pub, log: log.With("part", "commands"), in: make(chan commandMsg, commandQueue), maxPayload: h.MaxPayload()}
}

// Run handles queued commands until ctx ends, then returns ctx.Err(). A
// command running when ctx ends is cut short (its reply says timeout).
func (s *commandService) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-s.in:
			if s.audit != nil {
				s.audit.begin(m.payload)
			}
			topic, reply := s.handle(ctx, m)
			if s.audit != nil {
				s.audit.end()
			}
			if topic == "" {
				continue
			}
			if err := s.publishReply(ctx, topic, reply); err != nil && !errors.Is(err, context.Canceled) {
				s.log.Warn("publishing a command reply failed; central will resend the command", "topic", topic, "err", err)
			}
		}
	}
}

// listShipments opens and closes expected shipments in the station's
// allowlist (its local shipments, beside those central's list carries).
type listShipments struct{ list *allowlist.Store }

func (l listShipments) Shipment(open bool, door string, s command.Shipment) error {
	if !open {
		return l.list.CloseShipment(door, s.ID)
	}
	sh := custody.Shipment{ID: s.ID, Door: door, Direction: s.Direction}
	for _, ln := range s.Lines {
		sh.Lines = append(sh.Lines, custody.Line{GTIN: ln.GTIN, Lot: ln.Lot, Serial: ln.Serial, SSCC: ln.SSCC, Qty: ln.Qty})
	}
	if err := l.list.OpenShipment(sh); err != nil {
		if errors.Is(err, allowlist.ErrShipment) {
			return &command.Error{Code: command.CodeInvalidArgs, Msg: err.Error()}
		}
		return err
	}
	return nil
}
