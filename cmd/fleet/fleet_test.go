package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

func fleetOptions(t *testing.T) Options {
	return Options{Stations: 20, Rate: 10, Duration: 3 * time.Second, Mosquitto: "/usr/sbin/mosquitto",
		Consumers: 2, Drain: 20 * time.Second, Dir: t.TempDir(), InFlight: 32}
}

func runFleet(t *testing.T, o Options) Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	rep, err := Run(ctx, o, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("fleet run: %v", err)
	}
	t.Logf("%+v\n%s", o, rep)
	if want := uint64(float64(o.Stations) * o.Rate * o.Duration.Seconds() / 2); rep.Appended < want {
		t.Errorf("only %d events appended, want at least %d", rep.Appended, want)
	}
	if rep.Unexpected != 0 {
		t.Errorf("%d unexpected deliveries", rep.Unexpected)
	}
	if rep.Delivered+rep.Lost != rep.Appended {
		t.Errorf("delivered %d + lost %d != appended %d", rep.Delivered, rep.Lost, rep.Appended)
	}
	return rep
}

// TestFleetSharedSubscriptionSplitsLoad: every event reaches exactly one
// member of the $share group, and both members get work.
func TestFleetSharedSubscriptionSplitsLoad(t *testing.T) {
	o := fleetOptions(t)
	o.Central = "shared"
	rep := runFleet(t, o)
	if !rep.OK() {
		t.Errorf("events lost: %d of %d", rep.Lost, rep.Appended)
	}
	for i, n := range rep.PerConsumer {
		if n == 0 {
			t.Errorf("consumer %d got nothing: %v", i, rep.PerConsumer)
		}
	}
	if rep.P50 <= 0 || rep.P99 < rep.P50 || rep.EventsPerSec <= 0 {
		t.Errorf("implausible measurements: %+v", rep)
	}
}

// TestFleetSurvivesBrokerRestart: 20 stations for 5 s with a clean broker
// restart at 2 s; central holds persistent per-site subscriptions, which
// mosquitto restores from its persistence file, so nothing is lost.
func TestFleetSurvivesBrokerRestart(t *testing.T) {
	o := fleetOptions(t)
	o.Central, o.Duration, o.RestartAt = "partitioned", 5*time.Second, 2*time.Second
	rep := runFleet(t, o)
	if !rep.OK() {
		t.Errorf("events lost across the restart: %d of %d", rep.Lost, rep.Appended)
	}
	if rep.Restarts != 1 || rep.Connects < 2*uint64(o.Stations) {
		t.Errorf("restarts %d, connects %d: want 1 restart and every station reconnected", rep.Restarts, rep.Connects)
	}
}

// TestFleetSharedSubscriptionAcrossRestart documents mosquitto 2.0's gap:
// it does not restore $share subscriptions from its persistence file, so
// events published after the restart and before the consumers re-subscribe
// go to no one. The run must still account for every event (delivered or
// reported lost). See uplink/SCALING.md.
func TestFleetSharedSubscriptionAcrossRestart(t *testing.T) {
	o := fleetOptions(t)
	o.Central, o.RestartAt, o.Drain = "shared", time.Second, 3*time.Second
	rep := runFleet(t, o)
	t.Logf("shared subscription across a restart: %d of %d events lost", rep.Lost, rep.Appended)
}

// TestFleetReceiptDeliveryBrokerKill: 20 stations in receipt delivery with
// central's real collector writing to a private PostgreSQL; the broker is
// killed with SIGKILL mid-run (it loses every session and queued message:
// nothing was saved yet). Every appended event ends in PostgreSQL exactly
// once. The same run with broker delivery is reported beside it: there the
// kill loses whatever the broker held for the collector at that moment
// (how much depends on how far behind the collector was; the deterministic
// comparison, collector offline, is cmd/dockd's TestCollectProofBrokerKill).
func TestFleetReceiptDeliveryBrokerKill(t *testing.T) {
	var reps [2]Report
	for i, delivery := range []string{"receipt", "broker"} {
		o := fleetOptions(t)
		o.Dir = t.TempDir()
		o.Central, o.Duration, o.KillAt, o.Delivery, o.Collector = "partitioned", 4*time.Second, 2*time.Second, delivery, true
		o.ReceiptTimeout = 2 * time.Second
		if delivery == "broker" {
			o.Drain = 5 * time.Second // what is lost stays lost
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		rep, err := Run(ctx, o, slog.New(slog.NewTextHandler(io.Discard, nil)))
		cancel()
		if err != nil {
			t.Fatalf("fleet run (%s): %v", delivery, err)
		}
		reps[i] = rep
		t.Logf("delivery %s:\n%s", delivery, rep)
		if rep.Kills != 1 || rep.Appended == 0 || rep.Unseen != 0 {
			t.Fatalf("delivery %s: kills %d, appended %d, rows not offered %d", delivery, rep.Kills, rep.Appended, rep.Unseen)
		}
	}
	if !reps[0].OK() {
		t.Errorf("receipt delivery: offered %d, stored %d, lost %d", reps[0].Appended, reps[0].Stored, reps[0].StoreLost)
	}
	if r := reps[0]; r.RowP50 <= 0 || r.RowP99 < r.RowP50 {
		t.Errorf("scan → row latency p50 %v p99 %v: want 0 < p50 ≤ p99", r.RowP50, r.RowP99)
	}
	if reps[1].Stored+reps[1].StoreLost != reps[1].Appended {
		t.Errorf("broker delivery: stored %d + lost %d != offered %d", reps[1].Stored, reps[1].StoreLost, reps[1].Appended)
	}
	t.Logf("broker kill -9: receipt delivery lost %d of %d, broker delivery lost %d of %d",
		reps[0].StoreLost, reps[0].Appended, reps[1].StoreLost, reps[1].Appended)
}
