package main

// The audit trail: every change of the station's state — the door's
// direction by any path, the lamp test, a config reload, a shipment opened
// or closed, an allowlist version activated, the acknowledge button — is an
// operator record (dockd.operator-event/1) on the events stream, appended
// to the durable buffer and delivered exactly like custody events. Each
// says what changed, who asked (actor), how (via) and, for central's
// commands, the command id. The log line is a copy, not the record.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dockd/dockd/buffer"
	"github.com/dockd/dockd/internal/allowlist"
	"github.com/dockd/dockd/internal/command"
	"github.com/dockd/dockd/internal/config"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/statuspage"
)

// Operator record actions (operator-event.schema.json "action").
const (
	actAcknowledge       = "acknowledge"
	actDirection         = "direction"
	actLightTest         = "light_test"
	actReloadConfig      = "reload_config"
	actShipmentOpen      = "shipment_open"
	actShipmentClose     = "shipment_close"
	actAllowlistActivate = "allowlist_activate"
)

// Ways a change reaches the station (operator-event.schema.json "via"),
// beside statuspage.ViaPage, ViaAPI and ViaCLI.
const (
	viaButton    = "button"     // the acknowledge button at the door
	viaKeySwitch = "key_switch" // the direction key switch at the door
	viaMQTT      = "mqtt"       // a command or allowlist update from central
)

// Actors that are not a signed-in principal.
const (
	actorOperator = "operator" // whoever stands at the door (button, key switch)
	actorCentral  = "central"  // whoever may publish to the station's command and allowlist topics
)

// auditRecord is one operator record before it is stored.
type auditRecord struct {
	Action    string
	Actor     string
	Via       string
	CommandID string
	Detail    string
	// Previous is the direction before a direction change ("" otherwise).
	Previous dock.Direction
	// Shipment is the shipment id of shipment_open/shipment_close.
	Shipment string
	// AllowlistVersion is the version an allowlist_activate made active.
	AllowlistVersion string
}

// recordOperator appends rec as an operator record (no decision) to the
// event stream, durably, like a scan's custody event, and logs it. A
// record that cannot be stored (buffer full, storage fault) is logged as
// an error; the change it describes has happened.
func (d *daemon) recordOperator(ctx context.Context, rec auditRecord) {
	ev := dock.CustodyEvent{
		Schema: dock.OperatorEventSchema, Kind: "operator", Action: rec.Action, ID: dock.NewEventID(),
		Site: d.cfg.Station.Site, Station: d.cfg.Station.ID, Door: d.cfg.Station.Door,
		Direction: d.station.Direction(), Time: time.Now().UTC(), ClockSynced: clockSynced(),
		Actor: rec.Actor, Via: rec.Via, CommandID: rec.CommandID, PreviousDirection: rec.Previous,
		Shipment: rec.Shipment, AllowlistVersion: rec.AllowlistVersion,
		Decision: dock.Decision{Detail: rec.Detail},
	}
	seq, err := d.outbox().Append(context.WithoutCancel(ctx), func(seq uint64) ([]byte, error) {
		e := ev
		e.Seq = seq
		return json.Marshal(&e)
	})
	if err != nil {
		d.log.Error("operator action not recorded", "action", rec.Action, "actor", rec.Actor, "via", rec.Via,
			"command_id", rec.CommandID, "err", err)
		return
	}
	d.log.Info("operator action", "seq", seq, "action", rec.Action, "actor", rec.Actor, "via", rec.Via,
		"command_id", rec.CommandID, "detail", rec.Detail)
}

// setDirection switches the door for actor/via and records the change;
// switching to the direction the door already has changes and records
// nothing.
func (d *daemon) setDirection(ctx context.Context, dir dock.Direction, rec auditRecord) error {
	d.dirMu.Lock()
	defer d.dirMu.Unlock()
	prev := d.station.Direction()
	if prev == dir {
		return nil
	}
	if err := d.station.SetDirection(dir); err != nil {
		return err
	}
	rec.Action, rec.Previous = actDirection, prev
	if rec.Detail == "" {
		rec.Detail = fmt.Sprintf("%s set %s (was %s)", rec.Via, dir, prev)
	}
	d.recordOperator(ctx, rec)
	return nil
}

// errNoConfigFile: the station runs on a config that came from no file
// (the demo), so there is nothing to reload.
var errNoConfigFile = errors.New("this station's config came from no file: nothing to reload")

// reloadAudited re-reads the config with reload and records the reload
// (and the direction it turned the door to, if it did) for rec's actor.
func (d *daemon) reloadAudited(ctx context.Context, rec auditRecord, reload func() error) error {
	if reload == nil {
		return errNoConfigFile
	}
	d.dirMu.Lock()
	defer d.dirMu.Unlock()
	prev := d.station.Direction()
	if err := reload(); err != nil {
		return err
	}
	rec.Action, rec.Detail = actReloadConfig, "config reloaded from "+d.opts.ConfigPath
	if now := d.station.Direction(); now != prev {
		rec.Previous = prev
		rec.Detail += fmt.Sprintf("; direction %s (was %s)", now, prev)
	}
	d.recordOperator(ctx, rec)
	return nil
}

// configReload is the daemon's reload function, nil without a config file.
func (d *daemon) configReload() func() error {
	if d.opts.ConfigPath == "" {
		return nil
	}
	return d.reloadConfig
}

// recordAllowlistAck records an allowlist version central's update made
// active (once per version and sequence, however often it is
// acknowledged).
func (d *daemon) recordAllowlistAck(a allowlist.Ack) {
	if a.Status != allowlist.StatusApplied {
		return
	}
	key := fmt.Sprintf("%s\x00%d", a.ActiveVer, a.ActiveSeq)
	d.auditMu.Lock()
	dup := d.lastActivated == key
	d.lastActivated = key
	d.auditMu.Unlock()
	if dup {
		return
	}
	d.recordOperator(context.Background(), auditRecord{Action: actAllowlistActivate, Actor: actorCentral, Via: viaMQTT,
		AllowlistVersion: a.ActiveVer,
		Detail:           fmt.Sprintf("allowlist %s %q (seq %d) active, from %s", a.Kind, a.ActiveVer, a.ActiveSeq, a.Topic)})
}

// auditState is the daemon's audit bookkeeping (embedded in daemon).
type auditState struct {
	dirMu         sync.Mutex // one direction change at a time, so Previous is exact
	auditMu       sync.Mutex
	lastActivated string
}

// commandAudit carries the id of the command central's command service is
// running (one at a time) to the executor, which puts it on the record.
type commandAudit struct {
	current atomic.Pointer[string]
}

// begin notes the command message about to run; end clears it.
func (c *commandAudit) begin(payload []byte) {
	var env struct {
		ID string `json:"id"`
	}
	id := ""
	if json.Unmarshal(payload, &env) == nil && command.ValidID(env.ID) {
		id = env.ID
	}
	c.current.Store(&id)
}

func (c *commandAudit) end() { c.current.Store(nil) }

// record is the audit record of the running command.
func (c *commandAudit) record() auditRecord {
	id := ""
	if p := c.current.Load(); p != nil {
		id = *p
	}
	return auditRecord{Actor: actorCentral, Via: viaMQTT, CommandID: id}
}

// recordOffline appends rec as an operator record to the buffer of a
// stopped station (a tool that changed its state while it was down, e.g.
// dockd allowlist import); the station delivers it when it runs again.
func recordOffline(ctx context.Context, cfg config.Config, rec auditRecord) (uint64, error) {
	q, err := buffer.Open(filepath.Join(cfg.StateDir, "buffer.db"), buffer.Options{MaxBytes: int64(cfg.Buffer.MaxBytes),
		MaxAge: cfg.Buffer.MaxAge, AlarmFraction: cfg.Buffer.AlarmFraction, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return 0, fmt.Errorf("recording %s in the event buffer: %w", rec.Action, err)
	}
	defer q.Close()
	ev := dock.CustodyEvent{
		Schema: dock.OperatorEventSchema, Kind: "operator", Action: rec.Action, ID: dock.NewEventID(),
		Site: cfg.Station.Site, Station: cfg.Station.ID, Door: cfg.Station.Door,
		Direction: cfg.Station.Direction, Time: time.Now().UTC(), ClockSynced: clockSynced(),
		Actor: rec.Actor, Via: rec.Via, AllowlistVersion: rec.AllowlistVersion, Decision: dock.Decision{Detail: rec.Detail},
	}
	seq, err := q.Append(ctx, func(seq uint64) ([]byte, error) {
		e := ev
		e.Seq = seq
		return json.Marshal(&e)
	})
	if err != nil {
		return 0, fmt.Errorf("recording %s in the event buffer: %w", rec.Action, err)
	}
	return seq, nil
}

// actorRecord is the audit record of a status page or control socket
// action.
func actorRecord(a statuspage.Actor) auditRecord {
	return auditRecord{Actor: a.Who, Via: a.Via}
}
