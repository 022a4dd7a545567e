package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"periph.io/x/conn/v3/gpio"

	"github.com/dockd/dockd/buffer"
	"github.com/dockd/dockd/device/light"
	"github.com/dockd/dockd/device/reader"
	"github.com/dockd/dockd/device/rfid"
	"github.com/dockd/dockd/internal/allowlist"
	"github.com/dockd/dockd/internal/command"
	"github.com/dockd/dockd/internal/config"
	"github.com/dockd/dockd/internal/custody"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/outbox"
	"github.com/dockd/dockd/internal/scan"
	"github.com/dockd/dockd/internal/sdnotify"
	"github.com/dockd/dockd/internal/station"
	"github.com/dockd/dockd/internal/statuspage"
	"github.com/dockd/dockd/uplink"
	"github.com/dockd/dockd/uplink/contract"
)

// frameReader is what the daemon runs for each configured reader.
type frameReader interface {
	ID() string
	Run(ctx context.Context, frames chan<- dock.Frame, states chan<- dock.ReaderState) error
}

// daemonOptions lets the demo and tests add what a config file cannot say.
type daemonOptions struct {
	// Stdin feeds readers of type "stdin" (the demo's virtual reader).
	Stdin io.Reader
	// LightPins replaces the configured light driver (tests use recording pins).
	LightPins *light.Pins
	// ConfigPath is the file the config came from; reload-config re-reads it.
	ConfigPath string
	// ClockSynced replaces the kernel's NTP state for judging command ages
	// (tests; nil: the kernel's).
	ClockSynced func() bool
}

// daemon is one running station: every part opened, wired, not yet running.
type daemon struct {
	cfg     config.Config
	log     *slog.Logger
	started time.Time

	list    *allowlist.Store
	queue   *buffer.Queue
	light   *light.StackLight
	station *station.Station
	readers []frameReader
	up      *uplink.Client     // nil without a broker
	cmds    *commandService    // nil without a broker
	updater *allowlist.Updater // nil without a broker
	page    *statuspage.Server
	pageLn  net.Listener // the status page's listener, opened at start
	ctlLn   net.Listener // the control socket (nil: off), opened at start
	opts    daemonOptions
	auditState

	ackButton, dirSwitch gpio.PinIn // optional door inputs

	statusMu  sync.Mutex
	lastState string
}

// openDaemon opens the state files, the light and the readers, and wires the
// pipeline. On error everything opened so far is closed again.
func openDaemon(cfg config.Config, log *slog.Logger, opts daemonOptions) (d *daemon, err error) {
	d = &daemon{cfg: cfg, log: log, started: time.Now(), opts: opts}
	tuneGC(log)
	opened := d // the error returns below set d to nil
	defer func() {
		if err != nil {
			opened.closeStores()
		}
	}()
	if err := checkSecrets(cfg); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("creating state dir: %w", err)
	}
	if d.list, err = allowlist.Open(filepath.Join(cfg.StateDir, "allowlist.db"), d.allowlistOptions()...); err != nil {
		return nil, err
	}
	storageAlarm := false
	bufPath := filepath.Join(cfg.StateDir, "buffer.db")
	bopts := buffer.Options{MaxBytes: int64(cfg.Buffer.MaxBytes), MaxAge: cfg.Buffer.MaxAge, AlarmFraction: cfg.Buffer.AlarmFraction, Logger: log,
		GapRecord: d.gapRecord,
		Retain:    d.list.Checkpoint} // delivered events stay on disk until custody state has them
	d.queue, err = buffer.Open(bufPath, bopts)
	var ce *buffer.CorruptError
	if errors.As(err, &ce) {
		// The damaged file is kept aside for recovery; the station runs on a
		// fresh one but shows a storage fault until a technician looks.
		log.Error("event buffer was damaged and moved aside; starting a new one — recover the old file with dockd buffer export",
			"path", ce.Path, "moved_to", ce.MovedTo, "err", ce.Err)
		storageAlarm = true
		d.queue, err = buffer.Open(bufPath, bopts)
	}
	if err != nil {
		return nil, err
	}
	if err := d.replayCustody(); err != nil {
		return nil, err
	}

	pins, err := d.lightPins(opts)
	if err != nil {
		return nil, err
	}
	d.light = light.New(pins, light.Options{ActiveLow: cfg.Light.ActiveLow, DecisionHold: cfg.Light.DecisionHold}, log.With("part", "light"))
	if storageAlarm {
		d.light.SetCondition(dock.ConditionStorageFault, true)
	}
	if in := cfg.Light.Inputs; in.AckButton != "" || in.DirectionSwitch != "" {
		if cfg.Light.Driver != "gpio" && opts.LightPins == nil {
			return nil, fmt.Errorf("light.inputs need light.driver gpio")
		}
		if in.AckButton != "" {
			if d.ackButton, err = light.OpenInput("acknowledge button", in.AckButton); err != nil {
				return nil, err
			}
		}
		if in.DirectionSwitch != "" {
			if d.dirSwitch, err = light.OpenInput("direction switch", in.DirectionSwitch); err != nil {
				return nil, err
			}
		}
	}

	dec, err := scan.NewDecoder(scan.Config{NoAIM: cfg.Decode.NoAIM, PlainPatterns: cfg.Decode.PlainPatterns, DigitalLink: cfg.Decode.DigitalLink})
	if err != nil {
		return nil, fmt.Errorf("decoder: %w", err)
	}
	d.station = station.New(station.Config{
		Site: cfg.Station.Site, Door: cfg.Station.Door, StationID: cfg.Station.ID, Direction: cfg.Station.Direction,
		Policy: policyOf(cfg.Policy), ClockSynced: clockSynced, Location: cfg.Station.Location(),
	}, dec, d.list, d.outbox(), d.light, log.With("part", "station"))

	for _, rc := range cfg.Readers {
		switch rc.Type {
		case "serial":
			// The reader packages add "reader" (its id) and "port" themselves;
			// adding them here too would repeat the key in every line.
			r, err := reader.NewSerial(readerConfig(rc), log.With("part", "reader"))
			if err != nil {
				return nil, err
			}
			if rc.DedupeWindow > 0 {
				d.readers = append(d.readers, &dedupeReader{inner: r, window: rc.DedupeWindow})
			} else {
				d.readers = append(d.readers, r)
			}
		case "rfid":
			r, err := rfid.New(rfidConfig(rc), log.With("part", "reader"))
			if err != nil {
				return nil, err
			}
			d.readers = append(d.readers, r)
		case "stdin":
			in := opts.Stdin
			if in == nil {
				in = os.Stdin
			}
			d.readers = append(d.readers, &lineReader{id: rc.ID, in: in})
		}
	}

	if cfg.MQTT.Broker != "" {
		if d.up, err = d.newUplink(); err != nil {
			return nil, err
		}
	}
	if cfg.Status.Addr != "" || cfg.Status.ControlSocket(cfg.StateDir) != "" {
		if err := d.openStatusPage(); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// openStatusPage builds the status page and opens its listener now, so a
// taken port fails the start rather than a running station.
func (d *daemon) openStatusPage() error {
	sc := statuspage.Config{Addr: d.cfg.Status.Addr, AuthReads: d.cfg.Status.AuthReads, AllowedHosts: d.cfg.Status.AllowedHosts,
		TLSCertFile: d.cfg.Status.TLSCert, TLSKeyFile: d.cfg.Status.TLSKey, ClientCAFile: d.cfg.Status.ClientCA}
	if pf := d.cfg.Status.PasswordFile; pf != "" {
		h, err := statuspage.LoadPasswordFile(pf)
		if err != nil {
			return fmt.Errorf("status.password_file: %w", err)
		}
		sc.PasswordSHA256 = h
	}
	page, metrics, _, err := openStatusPage(d, sc)
	if err != nil {
		return err
	}
	if d.up != nil {
		d.up.OnAck(metrics.ObservePublishLatency)
	}
	if d.cfg.Status.Addr != "" { // else only the control socket serves the API
		ln, err := net.Listen("tcp", d.cfg.Status.Addr)
		if err != nil {
			return fmt.Errorf("status page: listening on %s (change status.addr, or empty it to turn the page off): %w", d.cfg.Status.Addr, err)
		}
		d.pageLn = ln
	}
	if err := d.openControlSocket(); err != nil {
		return err
	}
	d.page = page
	return nil
}

func readerConfig(rc config.Reader) reader.Config {
	return reader.Config{
		ID: rc.ID, Port: rc.Port, Baud: rc.Baud, DataBits: rc.DataBits, Parity: rc.Parity, StopBits: rc.StopBits,
		Suffix: rc.Suffix, Prefix: rc.Prefix, MaxFrame: rc.MaxFrame, MaxBackoff: rc.Backoff,
	}
}

func rfidConfig(rc config.Reader) rfid.Config {
	return rfid.Config{
		ID: rc.ID, Port: rc.Port, Baud: rc.Baud, Protocol: rc.Protocol,
		Fields: rc.Fields, Separator: rc.Separator, Suffix: rc.Suffix, Prefix: rc.Prefix, MaxLine: rc.MaxLine,
		Region: rc.Region, ReadPowerCentiDBm: rc.ReadPowerCDBm, CommandTimeout: rc.CommandTimeout, StallTimeout: rc.StallTimeout,
		DedupeWindow: rc.DedupeWindow, MinRSSI: rc.MinRSSI, MaxBackoff: rc.Backoff,
	}
}

// dedupeReader passes a reader's frames through a dedupe window: the same
// code seen again within the window is one scan (fixed-mount scanners read
// a carton several times as it passes).
type dedupeReader struct {
	inner  frameReader
	window time.Duration
}

func (r *dedupeReader) ID() string { return r.inner.ID() }

func (r *dedupeReader) Run(ctx context.Context, frames chan<- dock.Frame, states chan<- dock.ReaderState) error {
	in := make(chan dock.Frame, cap(frames))
	done := make(chan error, 1)
	go func() { done <- r.inner.Run(ctx, in, states) }()
	dd := reader.NewDeduper(r.window)
	for {
		select {
		case err := <-done:
			return err
		case f := <-in:
			if !dd.AdmitFrame(f) {
				continue
			}
			select {
			case frames <- f:
			case <-ctx.Done():
				return <-done
			}
		}
	}
}

// checkDevices runs the device drivers' own validation of a parsed config,
// for check-config: what only the driver knows (e.g. 1.5 stop bits need 5
// data bits).
func checkDevices(file string, cfg config.Config) error {
	var errs config.Errors
	for i, rc := range cfg.Readers {
		var err error
		switch rc.Type {
		case "serial":
			err = readerConfig(rc).Validate()
		case "rfid":
			err = rfidConfig(rc).Validate()
		}
		if err != nil {
			errs = append(errs, &config.Error{File: file, Key: fmt.Sprintf("readers[%d]", i), Msg: err.Error()})
		}
	}
	errs = append(errs, secretErrors(file, cfg)...)
	if len(errs) > 0 {
		return errs
	}
	return nil
}

func (d *daemon) lightPins(opts daemonOptions) (light.Pins, error) {
	if opts.LightPins != nil {
		return *opts.LightPins, nil
	}
	if d.cfg.Light.Driver == "virtual" {
		return light.VirtualPins(d.log.With("part", "light")), nil
	}
	p := d.cfg.Light.Pins
	return light.OpenGPIO(light.PinNames{Green: p.Green, Amber: p.Amber, Red: p.Red, Buzzer: p.Buzzer, ActiveLow: d.cfg.Light.ActiveLow})
}

func (d *daemon) newUplink() (*uplink.Client, error) {
	m := d.cfg.MQTT
	var password string
	if m.PasswordFile != "" {
		b, err := os.ReadFile(m.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("reading mqtt.password_file: %w", err)
		}
		password = strings.TrimSpace(string(b))
	}
	var tlsCfg *tls.Config
	if m.CAFile != "" || m.CertFile != "" || anyTLSBroker(m) {
		var err error
		if tlsCfg, err = uplink.TLSConfig(m.CAFile, m.CertFile, m.KeyFile, m.ServerName); err != nil {
			return nil, fmt.Errorf("mqtt TLS: %w", err)
		}
	}
	will, _ := json.Marshal(map[string]any{"schema": statusSchema, "station": d.cfg.Station.ID, "site": d.cfg.Station.Site, "door": d.cfg.Station.Door, "state": "offline"})
	base := d.cfg.TopicBase()
	uc := uplink.Config{
		Broker: m.Broker, ClientID: m.ClientID, Username: m.Username, Password: password, TLS: tlsCfg,
		EventsTopic: base + "/events", StatusTopic: base + "/status", Will: will,
		InFlight: m.InFlight, KeepAlive: m.KeepAlive, AckTimeout: m.AckTimeout,
		Extra: d.epcisExtra(contract.Topics{Prefix: m.TopicPrefix, Site: d.cfg.Station.Site, Door: d.cfg.Station.Door}.EPCIS()),
	}
	d.deliveryConfig(&uc)
	up, err := uplink.New(uc, d.outbox(), d.log.With("part", "uplink"))
	if err != nil {
		return nil, err
	}
	topics := contract.Topics{Prefix: m.TopicPrefix, Site: d.cfg.Station.Site, Door: d.cfg.Station.Door}
	exec := &daemonExecutor{d: d, ships: listShipments{d.list}}
	if d.opts.ConfigPath != "" {
		exec.reload = d.reloadConfig
	}
	d.cmds = newCommandService(command.NewHandler(d.commandConfig(command.Config{Topics: topics, Station: d.cfg.Station.ID, Log: d.log, Exec: exec})), up, d.log)
	d.cmds.audit = &exec.audit
	up.HandleMessage(topics.CommandFilter(), 1, d.cmds.ReceiveMessage)
	d.updater = allowlist.NewUpdater(d.list, d.publishListAck, d.log.With("part", "allowlist"))
	up.Handle(m.TopicPrefix+"/"+d.cfg.Station.Site+"/allowlist/#", 1, d.updater.Handle)
	up.OnConnectionChange(func(connected bool) {
		d.light.SetCondition(dock.ConditionBrokerOffline, !connected)
		if connected {
			d.log.Info("broker connected", "broker", up.Stats().Broker)
		} else {
			d.log.Warn("broker offline; events are kept in the buffer", "broker", up.Stats().Broker)
		}
	})
	return up, nil
}

// reloadConfig re-reads the config file. What can change on a running
// station (the door direction) is applied; if anything else changed, the
// error names the sections that need a restart and nothing else is applied.
func (d *daemon) reloadConfig() error {
	next, err := loadConfig(d.opts.ConfigPath)
	if err != nil {
		return err
	}
	if err := checkDevices(d.opts.ConfigPath, next); err != nil {
		return err
	}
	var restart []string
	for name, same := range map[string]bool{
		"station (other than direction)": next.Station.Site == d.cfg.Station.Site && next.Station.Door == d.cfg.Station.Door && next.Station.ID == d.cfg.Station.ID && next.Station.TimeZone == d.cfg.Station.TimeZone,
		"epcis":                          reflect.DeepEqual(next.EPCIS, d.cfg.EPCIS),
		"state_dir":                      next.StateDir == d.cfg.StateDir,
		"readers":                        reflect.DeepEqual(next.Readers, d.cfg.Readers),
		"light":                          reflect.DeepEqual(next.Light, d.cfg.Light),
		"mqtt":                           reflect.DeepEqual(next.MQTT, d.cfg.MQTT),
		"buffer":                         next.Buffer == d.cfg.Buffer,
		"decode":                         reflect.DeepEqual(next.Decode, d.cfg.Decode),
		"policy":                         reflect.DeepEqual(next.Policy, d.cfg.Policy),
		"log":                            next.Log == d.cfg.Log,
	} {
		if !same {
			restart = append(restart, name)
		}
	}
	if len(restart) > 0 {
		slices.Sort(restart)
		return fmt.Errorf("%s is valid, but these changes need a restart (systemctl restart dockd): %s", d.opts.ConfigPath, strings.Join(restart, ", "))
	}
	if next.Station.Direction != d.cfg.Station.Direction {
		if err := d.station.SetDirection(next.Station.Direction); err != nil {
			return err
		}
		d.cfg.Station.Direction = next.Station.Direction
	}
	d.log.Info("config reloaded", "path", d.opts.ConfigPath, "direction", next.Station.Direction)
	return nil
}

// publishListAck answers central's allowlist updates on
// PREFIX/SITE/DOOR/allowlist/ack (staged chunks are not acknowledged one by
// one). Called from the updater's goroutine.
func (d *daemon) publishListAck(a allowlist.Ack) {
	d.recordAllowlistAck(a)
	if a.Status == allowlist.StatusStaged {
		return
	}
	b, err := json.Marshal(a)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.up.Publish(ctx, d.cfg.TopicBase()+"/allowlist/ack", b); err != nil {
		d.log.Warn("allowlist update acknowledgement not published", "version", a.Version, "status", a.Status, "err", err)
	}
	d.publishStatus("online")
}

// policyOf turns the config's policy into the rules' policy.
func policyOf(c config.Policy) custody.Policy {
	p := custody.Policy{Warn: map[dock.Reason]bool{}, ExpiresSoonDays: c.ExpiresSoonDays,
		Direction: map[dock.Direction]map[dock.Reason]custody.Severity{}}
	for _, r := range c.Warn {
		p.Warn[r] = true
	}
	for dir, dp := range map[dock.Direction]config.DirectionPolicy{dock.Receiving: c.Receiving, dock.Shipping: c.Shipping} {
		m := map[dock.Reason]custody.Severity{}
		for _, r := range dp.Warn {
			m[r] = custody.SeverityWarn
		}
		for _, r := range dp.Reject {
			m[r] = custody.SeverityReject
		}
		p.Direction[dir] = m
	}
	return p
}

// replayCustody brings the allowlist's custody state up to date after a
// crash: custody changes reach allowlist.db in batches (no fsync on the
// light path), so events above its checkpoint are replayed from the event
// buffer, which keeps them until they are checkpointed (buffer.Options.Retain).
func (d *daemon) replayCustody() error {
	after := d.list.Checkpoint()
	replayed := 0
	for {
		rs, err := d.queue.Pending(after, 1000)
		if err != nil {
			return fmt.Errorf("replaying custody from the buffer: %w", err)
		}
		if len(rs) == 0 {
			break
		}
		for _, r := range rs {
			var ev dock.CustodyEvent
			if json.Unmarshal(r.Payload, &ev) == nil && ev.Kind == "" {
				d.list.Record(ev)
				replayed++
			}
			after = r.Seq
		}
	}
	if replayed > 0 {
		if err := d.list.Flush(); err != nil {
			return fmt.Errorf("replaying custody from the buffer: %w", err)
		}
		d.log.Info("custody state replayed from the buffer", "events", replayed, "checkpoint", d.list.Checkpoint())
	}
	return nil
}

// outbox is the buffer as the pipeline and the uplink see it. Delivered
// events leave the file lazily and only once the custody checkpoint has
// them (buffer.Options.Retain).
func (d *daemon) outbox() outbox.Outbox {
	return outbox.Outbox{Q: d.queue}
}

// catchUpAcks passes what the uplink released (the broker acknowledged it,
// or in receipt mode central receipted it) to the buffer through the outbox
// (the one ack path), in case the uplink's own ack failed.
func (d *daemon) catchUpAcks() {
	if d.up == nil {
		return
	}
	if seq := d.up.Stats().ReleasedSeq; seq > d.queue.Stats().LastAckSeq {
		if err := d.outbox().Ack(seq); err != nil {
			d.log.Error("acknowledging delivered events in the buffer", "seq", seq, "err", err)
		}
	}
}

// Run runs the station until ctx ends, then shuts down in order: readers
// stop, the pipeline records every frame already read, the uplink gets a
// moment to deliver, then the buffer and the list are closed and the light
// goes dark. It returns the first error that stopped a part early.
func (d *daemon) Run(ctx context.Context) error {
	frames := make(chan dock.Frame, station.FrameQueue)
	states := make(chan dock.ReaderState, 64)

	lightCtx, stopLight := context.WithCancel(context.Background())
	lightDone := make(chan struct{})
	go func() { defer close(lightDone); d.light.Run(lightCtx) }()

	upCtx, stopUp := context.WithCancel(context.Background())
	upDone := make(chan error, 1)
	cmdDone := make(chan error, 1)
	if d.up != nil {
		d.light.SetCondition(dock.ConditionBrokerOffline, true)
		d.publishStatus("online")
		go func() { upDone <- d.up.Run(upCtx) }()
		go func() { cmdDone <- d.cmds.Run(upCtx) }()
		go func() { d.updater.Run(upCtx) }()
	} else {
		close(upDone)
		close(cmdDone)
	}

	listCtx, stopList := context.WithCancel(context.Background())
	listDone := make(chan error, 1)
	go func() { listDone <- d.list.Run(listCtx) }()

	pageCtx, stopPage := context.WithCancel(context.Background())
	pageDone := make(chan error, 1)
	if d.page != nil {
		go func() { pageDone <- d.servePage(pageCtx) }()
	} else {
		close(pageDone)
	}

	stationCtx, stopStation := context.WithCancel(context.Background())
	stationDone := make(chan error, 1)
	go func() { stationDone <- d.station.Run(stationCtx, frames, states) }()

	readerCtx, stopReaders := context.WithCancel(ctx)
	var readersWG sync.WaitGroup
	for _, r := range d.readers {
		readersWG.Add(1)
		go func() {
			defer readersWG.Done()
			if err := r.Run(readerCtx, frames, states); err != nil && !errors.Is(err, context.Canceled) {
				d.log.Error("reader stopped", "reader", r.ID(), "err", err)
			}
		}()
	}

	bgDone := make(chan struct{})
	go func() { defer close(bgDone); d.watch(readerCtx) }()
	inputsDone := d.watchInputs(readerCtx)

	notify, err := sdnotify.FromEnv()
	if err != nil {
		d.log.Warn("systemd notification off", "err", err)
	}
	notify.Ready()
	notify.Status(fmt.Sprintf("running: %d reader(s), broker %s", len(d.readers), d.cfg.MQTT.Broker))
	wdDone := make(chan struct{})
	go func() {
		defer close(wdDone)
		notify.RunWatchdog(readerCtx, d.station.Ping, d.log.With("part", "watchdog"))
	}()
	d.log.Info("station running", "station", d.cfg.Station.ID, "site", d.cfg.Station.Site, "door", d.cfg.Station.Door,
		"direction", d.cfg.Station.Direction, "readers", len(d.readers), "broker", d.cfg.MQTT.Broker, "version", version)

	<-ctx.Done()
	notify.Stopping()
	d.log.Info("shutting down")
	// 0. the status page: no more buttons or injected scans.
	stopPage()
	<-pageDone
	// 1. readers: no new frames.
	stopReaders()
	readersWG.Wait()
	<-bgDone
	inputsDone.Wait()
	<-wdDone
	// 2. pipeline: record every frame already read.
	close(frames)
	err = <-stationDone
	stopStation()
	// The custody state of every recorded event reaches allowlist.db; then
	// the buffer may let go of what the broker has.
	stopList()
	<-listDone
	if d.up != nil {
		d.catchUpAcks()
	}
	// 3. uplink: a short grace to deliver what is pending; the uplink then
	// publishes the offline status (the will) itself and waits for its
	// PUBACK. Whatever is left stays in the buffer for the next start.
	if d.up != nil {
		d.drainUplink(2 * time.Second)
		stopUp()
		<-upDone
		<-cmdDone
		d.catchUpAcks()
	}
	stopUp()
	// 4. buffer and list, 5. light dark.
	d.closeStores()
	stopLight()
	<-lightDone
	d.log.Info("stopped")
	return err
}

// watchInputs starts the door input watchers; the returned group ends when
// ctx does. The acknowledge button silences the buzzer and releases a
// reject hold; the key switch sets the direction (closed = shipping). Each
// change is recorded durably as an operator record on the event stream.
func (d *daemon) watchInputs(ctx context.Context) *sync.WaitGroup {
	var wg sync.WaitGroup
	debounce := d.cfg.Light.Inputs.Debounce
	if d.cfg.Policy.HoldAfterReject {
		d.station.Observe(func(ev dock.CustodyEvent) {
			if ev.Verdict == dock.Reject {
				d.light.SetCondition(dock.ConditionRejectHold, true)
			}
		})
	}
	if d.ackButton != nil {
		wg.Go(func() {
			err := light.WatchButton(ctx, d.ackButton, debounce, func() {
				d.light.Silence()
				d.light.SetCondition(dock.ConditionRejectHold, false)
				d.recordOperator(ctx, auditRecord{Action: actAcknowledge, Actor: actorOperator, Via: viaButton, Detail: "acknowledge button pressed"})
			})
			if err != nil {
				d.log.Error("acknowledge button", "err", err)
			}
		})
	}
	if d.dirSwitch != nil {
		wg.Go(func() {
			err := light.WatchSwitch(ctx, d.dirSwitch, debounce, func(l gpio.Level) {
				dir := dock.Receiving
				if l == gpio.Low {
					dir = dock.Shipping
				}
				if err := d.setDirection(ctx, dir, auditRecord{Actor: actorOperator, Via: viaKeySwitch, Detail: "key switch set " + string(dir)}); err != nil {
					d.log.Error("direction switch", "err", err)
				}
			})
			if err != nil {
				d.log.Error("direction switch", "err", err)
			}
		})
	}
	return &wg
}

func (d *daemon) drainUplink(grace time.Duration) {
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) && d.up.Connected() && d.up.Stats().ReleasedSeq < d.queue.Stats().NewestSeq {
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *daemon) closeStores() {
	if d.pageLn != nil && d.page == nil {
		d.pageLn.Close()
	}
	if d.ctlLn != nil && d.page == nil {
		d.ctlLn.Close()
	}
	if d.queue != nil {
		if err := d.queue.Close(); err != nil {
			d.log.Error("closing buffer", "err", err)
		}
	}
	if d.list != nil {
		d.list.Close()
	}
}

// watch turns buffer health into light conditions and keeps the retained
// status fresh (heartbeat), until ctx ends.
func (d *daemon) watch(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	heartbeat := time.NewTicker(d.cfg.MQTT.Heartbeat) // config: at least 1s
	defer heartbeat.Stop()
	var alarm, full bool
	var receipts receiptAlarm
	for {
		select {
		case <-ctx.Done():
			return
		case <-heartbeat.C:
			if d.up != nil {
				d.publishStatus("online")
			}
			continue
		case <-tick.C:
		}
		d.catchUpAcks()
		st := d.queue.Stats()
		stalled := receipts.check(d)
		if a := st.Alarm || st.OverAge || stalled; a != alarm {
			alarm = a
			d.light.SetCondition(dock.ConditionBufferHigh, alarm)
			if alarm {
				d.log.Warn("buffer alarm", "depth", st.Depth, "bytes", st.Bytes, "fill", st.Fill, "over_age", st.OverAge, "receipts_stalled", stalled)
			}
		}
		if st.Full != full {
			full = st.Full
			d.light.SetCondition(dock.ConditionBufferFull, full)
		}
	}
}

const statusSchema = "dockd.station-status/1"

// Status is the retained station status published on …/status.
type Status struct {
	Schema      string         `json:"schema"`
	Station     string         `json:"station"`
	Site        string         `json:"site"`
	Door        string         `json:"door"`
	State       string         `json:"state"` // online | offline
	Direction   dock.Direction `json:"direction"`
	Version     string         `json:"version"`
	Time        time.Time      `json:"time"`
	UptimeS     int64          `json:"uptime_s"`
	HeartbeatS  int64          `json:"heartbeat_s"`
	ClockSynced bool           `json:"clock_synced"`
	Readers     []readerStatus `json:"readers"`
	Buffer      bufferStatus   `json:"buffer"`
	Allowlist   allowlist.Info `json:"allowlist"`
	Storage     *storageStatus `json:"storage,omitempty"` // nil where /proc/self/io is missing
}

type readerStatus struct {
	ID   string `json:"id"`
	Up   bool   `json:"up"`
	Port string `json:"port,omitempty"`
}

type bufferStatus struct {
	Depth      int     `json:"depth"`
	Bytes      int64   `json:"bytes"`
	OldestAgeS float64 `json:"oldest_age_s"`
	Fill       float64 `json:"fill"`
	Alarm      bool    `json:"alarm"`
	Full       bool    `json:"full"`
	// Receipt delivery only: events published that central has not
	// receipted, and seconds since the oldest was first published.
	Unconfirmed           *int     `json:"unconfirmed,omitempty"`
	UnconfirmedOldestAgeS *float64 `json:"unconfirmed_oldest_age_s,omitempty"`
}

func (d *daemon) status(state string) Status {
	st := d.queue.Stats()
	s := Status{
		Schema: statusSchema, Station: d.cfg.Station.ID, Site: d.cfg.Station.Site, Door: d.cfg.Station.Door,
		State: state, Direction: d.station.Direction(), Version: version, Time: time.Now().UTC(),
		UptimeS: int64(time.Since(d.started).Seconds()), HeartbeatS: int64(d.cfg.MQTT.Heartbeat / time.Second), ClockSynced: clockSynced(),
		Readers: []readerStatus{},
		Buffer:  bufferStatus{Depth: st.Depth, Bytes: st.Bytes, Fill: st.Fill, Alarm: st.Alarm, Full: st.Full},
	}
	if !st.OldestAt.IsZero() {
		s.Buffer.OldestAgeS = time.Since(st.OldestAt).Seconds()
	}
	if u := d.unconfirmed(); u.Receipt {
		s.Buffer.Unconfirmed, s.Buffer.UnconfirmedOldestAgeS = &u.Depth, &u.OldestAgeS
		s.Buffer.Alarm = s.Buffer.Alarm || u.Stalled
	}
	for _, r := range d.station.Readers() {
		s.Readers = append(s.Readers, readerStatus{ID: r.Reader, Up: r.Up, Port: r.Port})
	}
	s.Allowlist, _ = d.list.Info()
	s.Storage = readStorageStatus()
	return s
}

func (d *daemon) publishStatus(state string) {
	b, err := json.Marshal(d.status(state))
	if err != nil {
		return
	}
	d.up.SetStatus(b)
}

// clockSynced asks the kernel whether NTP has disciplined the clock (a Pi
// without RTC boots at a stale time until then).
func clockSynced() bool {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return true // cannot tell (e.g. seccomp): do not flag every event
	}
	return state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0
}
