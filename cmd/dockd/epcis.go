package main

import (
	"errors"

	"github.com/dockd/dockd/internal/epcis"
	"github.com/dockd/dockd/uplink"
)

// epcisExtra returns the uplink hook that publishes, for every stored scan
// record, its EPCIS 2.0 document on topic (nil when epcis.enabled is off).
// The document is rendered from the stored bytes alone, so a resend after
// a reconnect or a restart is byte-identical; the record leaves the buffer
// only when the event and its document were both acknowledged.
func (d *daemon) epcisExtra(topic string) func(uplink.Record) []uplink.Message {
	e := d.cfg.EPCIS
	if !e.Enabled {
		return nil
	}
	cfg := epcis.Config{
		Prefixes: e.Prefixes(), ReadPoint: e.ReadPoint, BizLocation: e.BizLocation,
		Location: d.cfg.Station.Location(), TransactionType: e.TransactionType, TransactionURI: e.TransactionURI,
		Site: d.cfg.Station.Site, Door: d.cfg.Station.Door,
	}
	log := d.log.With("part", "epcis")
	log.Info("EPCIS publishing on", "topic", topic, "read_point", e.ReadPoint, "biz_location", e.BizLocation, "company_prefixes", cfg.Prefixes.Len())
	return func(r uplink.Record) []uplink.Message {
		doc, err := epcis.StationDocument(r.Payload, cfg)
		switch {
		case errors.Is(err, epcis.ErrNotRendered), errors.Is(err, epcis.ErrNoObject):
			return nil // operator, gap, simulated and bad-scan records: no EPCIS event (CONTRACT.md)
		case errors.Is(err, epcis.ErrOtherDoor):
			// A backlog imported from another box (dockd buffer import):
			// this door's read point would misstate where it happened.
			log.Warn("no EPCIS document for an event of another door", "seq", r.Seq, "err", err)
			return nil
		case err != nil:
			// Deterministic: the same record fails the same way on every
			// resend, so holding the record back would stall the uplink.
			log.Error("EPCIS rendering failed; the custody event is published without it", "seq", r.Seq, "err", err)
			return nil
		}
		return []uplink.Message{{Topic: topic, Payload: doc}}
	}
}
