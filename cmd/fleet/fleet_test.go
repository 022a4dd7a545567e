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
