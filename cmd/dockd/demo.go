package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	firmwareconfig "github.com/dockd/dockd/firmware-config"
	"github.com/dockd/dockd/internal/allowlist"
	"github.com/dockd/dockd/internal/config"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/statuspage"
	"github.com/dockd/dockd/uplink"
)

const demoBanner = `
dockd demo station — site %s, door %s, %s
  light: virtual (lamp changes are logged)   broker: %s (embedded)   state: %s
  status page: %s
  sign in to its buttons (one-time link, 10 min): %s
  control socket: %s   (DOCKD_SOCKET=… dockd simulate SCAN, dockd light test, dockd login-link)
  allowlist: the sample list (firmware-config/sample-allowlist.csv)

Type or paste a scan and press Enter. Try:
  (01)09506000134352(10)LOT42(21)S1       accepted (green)
  (01)09506000134352(10)LOT43(21)S2       recalled lot (red + buzzer)
  (01)09506000134352(10)LOT99             unknown lot (red)
  (01)09506000134353(10)LOT42             bad check digit (bad scan)
  ]C1010950600013435210LOT42\x1d21S3      GS1-128 as a scanner sends it (\x1d = GS)
  epc:3074257BF7194E4000001A85            an RFID tag read (SGTIN-96)
Ctrl-D or Ctrl-C ends the demo.

`

func cmdDemo(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	stateDir := fs.String("state-dir", "", "keep the demo's buffer and allowlist here (default: a temporary directory)")
	if err := parseArgs(fs, "dockd demo [--state-dir DIR]", args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return &exitError{2, fmt.Errorf("demo: unexpected argument %q", fs.Arg(0))}
	}
	if *stateDir == "" {
		dir, err := os.MkdirTemp("", "dockd-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		*stateDir = dir
	}
	data := bytes.Replace(firmwareconfig.DemoConfig, []byte(`state_dir: ""`), []byte("state_dir: "+*stateDir), 1)
	cfg, err := config.Parse("demo.yaml (embedded)", data)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)

	list, err := allowlist.Open(*stateDir + "/allowlist.db")
	if err != nil {
		return err
	}
	_, err = list.ImportCSV(ctx, bytes.NewReader(firmwareconfig.SampleAllowlist), "sample", nil)
	list.Close()
	if err != nil {
		return fmt.Errorf("loading the sample allowlist: %w", err)
	}

	if cfg.MQTT.Broker == "" {
		b, err := uplink.StartEmbeddedBroker("127.0.0.1:0", nil)
		if err != nil {
			return err
		}
		defer b.Close()
		cfg.MQTT.Broker = b.URL()
		// The embedded broker listens on loopback only and nobody signs the
		// demo's lists: unsigned updates are this demo's explicit choice.
		cfg.Allowlist.AllowUnsigned = cfg.Allowlist.PublicKey == ""
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var out sync.Mutex
	printf := func(format string, a ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(stdout, format, a...)
	}

	delivered := make(chan struct{}, 1024)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		err := uplink.Watch(ctx, cfg.MQTT.Broker, "dockd-demo-central", cfg.MQTT.TopicPrefix+"/#", func(topic string, payload []byte, retained bool) {
			var pretty bytes.Buffer
			if json.Indent(&pretty, payload, "    ", "  ") != nil {
				pretty.Reset()
				pretty.Write(payload)
			}
			kind := "event"
			if strings.HasSuffix(topic, "/status") {
				kind = "status"
			}
			printf("\n── central received %s on %s%s:\n    %s\n", kind, topic, map[bool]string{true: " (retained)"}[retained], pretty.String())
			if kind == "event" {
				select {
				case delivered <- struct{}{}:
				default:
				}
			}
		})
		if err != nil {
			log.Error("demo subscriber", "err", err)
		}
	}()

	// When stdin ends (Ctrl-D or the end of piped input), wait until what
	// was scanned reached central, then stop.
	eof := make(chan struct{})
	d, err := openDaemon(cfg, log, daemonOptions{Stdin: &eofSignal{r: stdin, eof: eof}})
	if err != nil {
		return err
	}
	page, link, sock := "off", "-", "off"
	if d.pageLn != nil {
		base := "http://" + d.pageLn.Addr().String()
		page = base + "/"
		link = base + d.page.LoginLink(statuspage.LocalName(uint32(os.Getuid())))
	}
	if d.ctlLn != nil {
		sock = d.ctlLn.Addr().String()
	}
	printf(demoBanner, cfg.Station.Site, cfg.Station.Door, cfg.Station.Direction, cfg.MQTT.Broker, *stateDir, page, link, sock)
	d.station.Observe(func(ev dock.CustodyEvent) {
		lamp := map[dock.Verdict]string{dock.Accept: "GREEN", dock.Warn: "AMBER", dock.Reject: "RED"}[ev.Verdict]
		printf("\n>> %s  %s (%s) %s\n", lamp, strings.ToUpper(string(ev.Verdict)), ev.Reason, ev.Detail)
	})
	go func() {
		select {
		case <-eof:
		case <-ctx.Done():
			return
		}
		deadline := time.After(5 * time.Second)
		for d.queue.Stats().Depth > 0 {
			select {
			case <-delivered:
			case <-time.After(50 * time.Millisecond):
			case <-deadline:
				cancel()
				return
			}
		}
		time.Sleep(300 * time.Millisecond) // let the subscriber print the last one
		cancel()
	}()
	err = d.Run(ctx)
	cancel()
	<-watchDone
	return err
}

// eofSignal closes eof when the wrapped reader reports io.EOF.
type eofSignal struct {
	r    io.Reader
	eof  chan struct{}
	once sync.Once
}

func (e *eofSignal) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if errors.Is(err, io.EOF) {
		e.once.Do(func() { close(e.eof) })
	}
	return n, err
}

// lineReader is the demo's virtual reader: one scan per line of text.
// Typed escapes stand for the bytes a keyboard cannot send: \x1d, <GS> or
// {GS} for the GS1 separator. A line "epc:HEX" is an RFID tag read.
type lineReader struct {
	id string
	in io.Reader
}

func (l *lineReader) ID() string { return l.id }

// maxLine bounds one typed scan, like a serial reader's frame bound.
const maxLine = 4096

// Run reads lines until the input ends or ctx is cancelled. The input is
// read on a goroutine of its own (a terminal read cannot be interrupted);
// Run returns when ctx ends even if that read is still blocked.
func (l *lineReader) Run(ctx context.Context, frames chan<- dock.Frame, states chan<- dock.ReaderState) error {
	select {
	case states <- dock.ReaderState{Reader: l.id, Up: true, Port: "stdin", At: time.Now()}:
	case <-ctx.Done():
		return ctx.Err()
	}
	lines := make(chan dock.Frame)
	go func() {
		defer close(lines)
		br := bufio.NewReaderSize(l.in, maxLine)
		for {
			line, err := br.ReadSlice('\n')
			f := dock.Frame{Reader: l.id, At: time.Now()}
			if errors.Is(err, bufio.ErrBufferFull) {
				f.Data, f.Err = append([]byte(nil), line[:64]...), dock.ErrFrameTooLong
				for errors.Is(err, bufio.ErrBufferFull) { // discard to the end of the line
					_, err = br.ReadSlice('\n')
				}
			} else {
				var tag bool
				if f.Data, tag = typedLine(line); tag {
					f.Tag = &dock.TagRead{}
				}
			}
			if len(f.Data) > 0 {
				select {
				case lines <- f:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case f, ok := <-lines:
			if !ok {
				<-ctx.Done() // input ended: the reader idles until shutdown
				return ctx.Err()
			}
			select {
			case frames <- f:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

var gsEscapes = strings.NewReplacer(`\x1d`, "\x1d", `\x1D`, "\x1d", "<GS>", "\x1d", "{GS}", "\x1d")

// typedLine turns a typed line into the bytes a scanner would have sent,
// and says whether it is an RFID tag read ("epc:HEX").
func typedLine(line []byte) ([]byte, bool) {
	s := strings.TrimSpace(string(line))
	if hexPart, ok := strings.CutPrefix(s, "epc:"); ok {
		return []byte(strings.TrimSpace(hexPart)), true
	}
	return []byte(gsEscapes.Replace(s)), false
}
