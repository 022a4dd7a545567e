package main

// Receipt delivery and sequence gaps as the daemon wires them: the gap
// record the buffer stores after a failed commit, the uplink's delivery
// settings, and the unconfirmed backlog shown in the status, the page,
// /metrics and the light.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/dockd/dockd/internal/config"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/uplink"
	"github.com/dockd/dockd/uplink/contract"
)

// seqGap is the dockd.seq-gap/1 record (uplink/contract/seq-gap.schema.json).
type seqGap struct {
	Schema  string    `json:"schema"`
	Kind    string    `json:"kind"`
	ID      string    `json:"id"`
	Seq     uint64    `json:"seq"`
	Site    string    `json:"site"`
	Station string    `json:"station"`
	Door    string    `json:"door"`
	Time    time.Time `json:"time"`
	From    uint64    `json:"from"`
	To      uint64    `json:"to"`
	Reason  string    `json:"reason"`
}

// gapRecord builds the gap record the buffer stores (buffer.Options.GapRecord)
// under seq for the skipped seqs from..to.
func (d *daemon) gapRecord(seq, from, to uint64, reason string) ([]byte, error) {
	if len(reason) > 1000 {
		reason = reason[:1000]
	}
	return json.Marshal(seqGap{
		Schema: contract.SeqGapSchema, Kind: "gap", ID: dock.NewEventID(), Seq: seq,
		Site: d.cfg.Station.Site, Station: d.cfg.Station.ID, Door: d.cfg.Station.Door,
		Time: time.Now().UTC(), From: from, To: to, Reason: reason,
	})
}

// deliveryConfig fills the uplink's delivery settings from the config.
func (d *daemon) deliveryConfig(uc *uplink.Config) {
	m := d.cfg.MQTT
	uc.Brokers = m.Brokers
	uc.Delivery = uplink.DeliveryBroker
	if m.Delivery == config.DeliveryReceipt {
		uc.Delivery = uplink.DeliveryReceipt
		uc.ReceiptsTopic = d.topics().Receipts()
		uc.StationID = d.cfg.Station.ID
		uc.ReceiptTimeout = m.ReceiptTimeout
		uc.HighestIssued = func() uint64 { return d.queue.Stats().NewestSeq }
	}
}

func (d *daemon) topics() contract.Topics {
	return contract.Topics{Prefix: d.cfg.MQTT.TopicPrefix, Site: d.cfg.Station.Site, Door: d.cfg.Station.Door}
}

// anyTLSBroker reports whether one of the configured brokers is a TLS URL.
func anyTLSBroker(m config.MQTT) bool {
	for _, b := range m.Brokers {
		if strings.HasPrefix(b, "ssl://") || strings.HasPrefix(b, "mqtts://") || strings.HasPrefix(b, "tls://") {
			return true
		}
	}
	return false
}

// unconfirmedView is the receipt-mode backlog: events published to the
// broker that central has not receipted.
type unconfirmedView struct {
	Receipt    bool    // receipt delivery configured
	Depth      int     // unconfirmed events
	OldestAgeS float64 // since the oldest was first published; 0 when none
	Stalled    bool    // the oldest has waited longer than mqtt.receipt_alarm
}

func (d *daemon) unconfirmed() unconfirmedView {
	if d.up == nil || d.cfg.MQTT.Delivery != config.DeliveryReceipt {
		return unconfirmedView{}
	}
	st := d.up.Stats()
	v := unconfirmedView{Receipt: true, Depth: st.Unconfirmed}
	if !st.UnconfirmedSince.IsZero() {
		age := time.Since(st.UnconfirmedSince)
		v.OldestAgeS = age.Seconds()
		v.Stalled = age > d.cfg.MQTT.ReceiptAlarm
	}
	return v
}

// topics is the doctor's view of the station's topics.
func (d *doctor) topics() contract.Topics {
	return contract.Topics{Prefix: d.cfg.MQTT.TopicPrefix, Site: d.cfg.Station.Site, Door: d.cfg.Station.Door}
}

// checkReceipts is the doctor's row for receipt delivery: central answered
// the receipt probe (uplink/contract/CONTRACT.md, Receipts) with a receipt
// for this station.
func (d *doctor) checkReceipts(res uplink.ProbeResult, err error, pc uplink.ProbeConfig) {
	if res.Receipt == nil {
		d.add("receipts", levelFail, oneLine(errString(err)),
			"mqtt.delivery is receipt, so events stay on this box until central receipts them: start central's collector (dockd collect) and let it publish on "+
				pc.ReceiptsTopic+" and read "+pc.ReceiptProbeTopic+" (broker ACL), or set mqtt.delivery: broker")
		return
	}
	r := res.Receipt
	detail := fmt.Sprintf("probe → receipt in %s from collector %s (confirmed up to seq %d)", ms(res.ReceiptRoundTrip), r.Collector, r.Upto)
	if d.status != nil && d.status.Buffer.Unconfirmed != nil && *d.status.Buffer.Unconfirmed > 0 {
		detail += fmt.Sprintf("; the running station reports %d unconfirmed, oldest %.0fs", *d.status.Buffer.Unconfirmed, *d.status.Buffer.UnconfirmedOldestAgeS)
		if *d.status.Buffer.UnconfirmedOldestAgeS > d.cfg.MQTT.ReceiptAlarm.Seconds() {
			d.add("receipts", levelWarn, detail, "central answers probes but does not receipt this station's events: check the collector's log for this station")
			return
		}
	}
	d.add("receipts", levelPass, detail, "")
}

// checkStandbyBrokers probes the failover brokers of mqtt.brokers (after the
// first, which checkBroker probed) with the same credentials: one row each,
// a warning when one cannot be used (the station runs on the others).
func (d *doctor) checkStandbyBrokers(ctx context.Context, first uplink.ProbeConfig) {
	for i, b := range d.cfg.MQTT.Brokers {
		if i == 0 {
			continue
		}
		pc := first
		pc.Broker, pc.StatusTopic, pc.ReceiptsTopic = b, "", ""
		check := fmt.Sprintf("failover broker %d", i+1)
		res, err := uplink.Probe(ctx, pc)
		if err != nil {
			d.add(check, levelWarn, oneLine(errString(err)),
				"the station fails over to "+b+" when the first broker is lost: make it reachable with the same credentials and ACL, or remove it from mqtt.brokers")
			continue
		}
		d.add(check, levelPass, fmt.Sprintf("%s: connected in %s, round trip %s", b, ms(res.ConnectTime), ms(res.RoundTrip)), "")
	}
}

// receiptAlarm watches for stalled receipts once per watch tick and logs
// the edge; it reports whether the alarm is raised.
type receiptAlarm struct{ on bool }

func (a *receiptAlarm) check(d *daemon) bool {
	u := d.unconfirmed()
	if u.Stalled != a.on {
		a.on = u.Stalled
		if a.on {
			d.log.Warn("receipts stalled: events sent to central wait for its receipt",
				"unconfirmed", u.Depth, "oldest_age_s", int64(u.OldestAgeS), "receipt_alarm", d.cfg.MQTT.ReceiptAlarm,
				"confirmed_seq", d.up.Stats().ConfirmedSeq)
		} else {
			d.log.Info("receipts flowing again", "unconfirmed", u.Depth)
		}
	}
	return a.on
}
