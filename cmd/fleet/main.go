// Command fleet simulates a fleet of dock door stations against one MQTT
// broker and checks the delivery contract end to end: N stations, each the
// real pipeline (scan decoder, sample allowlist, bbolt buffer in its own
// file, MQTT uplink, a light that shows nothing), fed simulated scans, and
// central consumers reading every station's events through a shared
// subscription ($share/central/dockd/v1/+/+/events). It reports events/s,
// scan-to-consumer latency, and whether every appended event (station, seq)
// reached a consumer — including across a broker restart (-restart-at).
//
//	go run ./cmd/fleet -stations 200 -rate 2 -duration 30s -restart-at 10s
//
// Without -broker it starts its own mosquitto (persistence on, free
// loopback port). The exit status is 1 when events were lost.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	var o Options
	flag.IntVar(&o.Stations, "stations", 200, "stations to simulate")
	flag.Float64Var(&o.Rate, "rate", 2, "scans per second per station")
	flag.DurationVar(&o.Duration, "duration", 30*time.Second, "how long to feed scans")
	flag.StringVar(&o.Broker, "broker", "", "broker URL (tcp://host:port); empty: start a private mosquitto")
	flag.StringVar(&o.Mosquitto, "mosquitto", "/usr/sbin/mosquitto", "mosquitto binary for the private broker")
	flag.IntVar(&o.Consumers, "consumers", 4, "central consumers in the shared subscription group")
	flag.StringVar(&o.Group, "group", "central", "shared subscription group")
	flag.StringVar(&o.Central, "central", "shared", "consumer subscriptions: shared ($share group) | partitioned (persistent per-site subscriptions)")
	flag.DurationVar(&o.RestartAt, "restart-at", 0, "restart the private broker this long after scanning starts (0: never)")
	flag.DurationVar(&o.Drain, "drain", 60*time.Second, "how long to wait for stragglers after scanning stops")
	flag.StringVar(&o.Dir, "dir", "", "state directory (default: a temp dir, removed afterwards)")
	flag.IntVar(&o.InFlight, "in-flight", 32, "per-station uplink in-flight window")
	flag.StringVar(&o.Delivery, "delivery", "broker", "stations' mqtt.delivery: broker | receipt (receipt runs central's collector into PostgreSQL)")
	flag.DurationVar(&o.ReceiptTimeout, "receipt-timeout", 5*time.Second, "stations' mqtt.receipt_timeout (receipt delivery)")
	flag.DurationVar(&o.KillAt, "kill-at", 0, "kill -9 the private broker this long after scanning starts, then start it again (0: never)")
	flag.BoolVar(&o.Collector, "collector", false, "run central's collector into PostgreSQL and report what it stored (implied by -delivery receipt)")
	flag.StringVar(&o.DB, "db", "", "PostgreSQL URL for the collector (default: a private server, needs postgresql-15)")
	verbose := flag.Bool("v", false, "log at info level (every decision, every connection)")
	flag.Parse()

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rep, err := Run(ctx, o, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(2)
	}
	fmt.Print(rep)
	if !rep.OK() {
		fmt.Println("FAIL: events were lost or unaccounted for")
		if o.Delivery == "broker" && o.KillAt > 0 {
			fmt.Println("(expected with -delivery broker and a broker kill -9: compare -delivery receipt)")
		}
		os.Exit(1)
	}
	if rep.Collector {
		fmt.Println("OK: every appended event is in PostgreSQL exactly once")
		return
	}
	fmt.Println("OK: every appended event reached a consumer")
}
