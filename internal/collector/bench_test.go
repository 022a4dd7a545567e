package collector

import (
	"fmt"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/dockd/dockd/internal/testkit"
)

// BenchmarkCollectorThroughput: one collector drains a backlog of events
// that 20 stations published while it was offline (queued in its
// persistent session at Mosquitto, max_inflight_messages 4000, so the next batch arrives while one commits) into a
// private PostgreSQL (fsync on), and reports events/s from its start to
// the last station's high-water mark reaching the end. batch=1 (one
// transaction, one fsync per event) is the baseline in the same run.
func BenchmarkCollectorThroughput(b *testing.B) {
	for _, batch := range []int{1000, 100, 1} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			events := 20000
			if batch == 1 {
				events = 2000 // one fsync per event: keep the baseline short
			}
			var total time.Duration
			for i := 0; i < b.N; i++ {
				total += collectBacklog(b, batch, events)
			}
			b.ReportMetric(float64(events*b.N)/total.Seconds(), "events/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func collectBacklog(b *testing.B, batch, events int) time.Duration {
	b.StopTimer()
	mq := testkit.StartMosquitto(b, testkit.WithMosqConfig("max_inflight_messages 4000"))
	pg := testkit.StartPostgres(b)
	name := fmt.Sprintf("bench-%d", batch)
	_, stop := runCollector(b, Config{Brokers: []string{mq.URL()}, DB: pg.DSN(), Name: name, MaxBatch: batch})
	stop()
	cli := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL()).SetClientID("bench-pub").SetProtocolVersion(4).
		SetMaxResumePubInFlight(1000))
	if tok := cli.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("connect: %v", tok.Error())
	}
	defer cli.Disconnect(100)
	const nst = 20
	stations := make([]fakeStation, nst)
	for i := range stations {
		stations[i] = newFake("bench", fmt.Sprintf("door-%d", i))
	}
	per := events / nst
	var toks []mqtt.Token
	for seq := 1; seq <= per; seq++ {
		for _, f := range stations {
			toks = append(toks, cli.Publish(f.topic(), 1, false, f.event(uint64(seq))))
		}
		if len(toks) >= 1000 {
			for _, tok := range toks {
				if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
					b.Fatalf("publish: %v", tok.Error())
				}
			}
			toks = toks[:0]
		}
	}
	for _, tok := range toks {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			b.Fatalf("publish: %v", tok.Error())
		}
	}
	b.StartTimer()
	start := time.Now()
	_, stop = runCollector(b, Config{Brokers: []string{mq.URL()}, DB: pg.DSN(), Name: name, MaxBatch: batch})
	want := int64(per * nst)
	for {
		n, err := queryInt(pg, `SELECT coalesce(sum(upto), 0) FROM stations WHERE site = 'bench'`)
		if err == nil && n == want {
			break
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("only %d of %d events stored after 5 min", n, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	d := time.Since(start)
	b.StopTimer()
	stop()
	if got := pg.QueryInt(`SELECT count(*) FROM events`); got != want {
		b.Fatalf("%d rows, want %d", got, want)
	}
	return d
}
