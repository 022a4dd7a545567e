// Package collector is central's side of the station uplink: it takes
// every message on PREFIX/+/+/events from an MQTT broker, stores it in
// PostgreSQL exactly once, and tells each station how far it may forget
// with a receipt on PREFIX/SITE/DOOR/receipts
// ({"schema":"dockd.receipt/1","station":…,"upto":N,"time":…,"collector":…}).
//
// # What is guaranteed
//
//   - Nothing the broker delivered is lost by the collector. The MQTT
//     session is persistent (clean session false, a client id fixed by
//     the collector's name) and acknowledgements are manual (paho's
//     SetAutoAckDisabled): a message's PUBACK is sent only after the
//     PostgreSQL transaction holding it committed. A collector that dies
//     anywhere before that leaves the message unacknowledged in its
//     session, and the broker sends it again when the collector is back.
//   - Nothing is stored twice. events has id as primary key and a unique
//     (station, seq); a redelivered record is recognised (same id, station
//     and seq) and counted as a duplicate. A record that conflicts (an id
//     or a (station, seq) already stored with other values) is not
//     stored: it goes to dead_letter with the reason.
//   - A receipt is published only after the commit, and says "every seq ≤
//     upto of this station is stored here or was declared skipped by the
//     station" (dockd.seq-gap/1 records). The per-station high-water mark
//     (stations.upto) and the missing ranges above it (station_holes) are
//     in PostgreSQL, updated in the same transaction as the events under
//     the station's row lock, so a restarted collector — or a second one —
//     receipts exactly what is stored. Every station with a record in a
//     committed batch gets a receipt, duplicates included: a station
//     resending is a station that missed one. Receipts are merged per
//     station and sent every Config.ReceiptInterval (250 ms), so a busy
//     station gets at most a few per second, not one per batch.
//   - A station id is bound to the SITE/DOOR it was first heard on, and
//     a (station, seq) to the id first stored for it. A box re-provisioned
//     with an old station id (its seqs start again at 1) therefore gets
//     dead letters ("… is already stored with id …") and no receipts: in
//     receipt mode it keeps its events and raises its alarm until someone
//     gives it a new station id. Nothing stored is overwritten.
//   - Bad input never stops the collector and never blocks other
//     stations' events: a message that is not a valid record of the
//     contract (unparseable, unknown schema, a topic or station that does
//     not match) is stored in dead_letter with the reason and its exact
//     bytes, and acknowledged. A record the database itself refuses is
//     retried as raw bytes (jsonb cannot hold U+0000) and dead-lettered
//     only if refused again.
//   - A database that is down, unreachable, read-only or full stops the
//     collector acknowledging and receipting: the batch in hand is
//     retried (backoff up to 2 s) until it commits; the queue fills and
//     blocks the MQTT receive path (backpressure; the broker holds the
//     rest in the session, the stations in their buffers). The state
//     change is logged once each way; recovery needs no one.
//
// Batching: the writer takes everything queued (up to Config.MaxBatch)
// into one transaction, so one commit's fsync covers many events. A
// broker's limit of unacknowledged messages per client bounds a batch
// (Mosquitto's max_inflight_messages, default 20: raise it, e.g. to
// 1000, on the broker central uses; NATS allows 1024 per session).
//
// # Plain, partitioned or $share subscriptions
//
// The default is one plain persistent subscription to PREFIX/+/+/events.
// uplink/SCALING.md found that Mosquitto 2.0 keeps plain subscriptions of
// persistent sessions (and what is queued for them) across a restart but
// forgets $share subscriptions: after a broker restart every event
// published before the collectors re-subscribe is acknowledged to its
// station and delivered to no one. With receipts the station would resend
// it after its receipt timeout, but only in receipt mode and only late.
// So to scale out on Mosquitto run n collectors with Partition k of n:
// each holds its own plain persistent subscription, stores the doors
// whose SITE/DOOR hashes to k, and acknowledges the rest unstored (every
// collector receives every event: n-fold fan-out at the broker, fine for
// a handful). Use Config.Share ($share/GROUP/…) only on brokers that keep
// shared subscriptions in persistent sessions (HiveMQ, EMQX 5 with durable
// sessions); NATS does not deliver $share subscriptions at all. Shared
// collectors may write the same station concurrently; the station row
// lock (taken in name order) serialises them.
//
// # Answering from what is stored
//
// Trace (GET /trace) lists where a lot, serial or SSCC crossed.
// ExportFSMA204 streams the receiving and shipping Critical Tracking
// Events of a lot or time range as FDA's FSMA 204 sortable spreadsheet
// (package fsma204 builds the rows and writes CSV or XLSX; refused scans
// are not CTEs). EPCISHandler (GET /epcis/events) answers a documented
// subset of the EPCIS 2.0 REST query interface with the stored events
// rendered by package epcis (uplink/contract/CONTRACT.md lists the
// parameters and what is left out). Migration 3 adds the partial indexes
// both read through.
package collector
