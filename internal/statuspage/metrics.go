package statuspage

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dockd/dockd/internal/dock"
)

// Metrics are the station's Prometheus metrics. Counters and the latency
// histogram are fed by the pipeline through the Observe methods; gauges
// (readers, buffer, broker, allowlist, light) are read from the Source at
// scrape time, so they are never stale. Safe for concurrent use.
//
//	dockd_scans_total{decision,reason}          counter
//	dockd_decode_errors_total{kind}             counter (bad_scan decisions by error kind)
//	dockd_publish_latency_seconds               histogram (publish → PUBACK)
//	dockd_reader_up{reader}                     gauge 1/0
//	dockd_reader_last_scan_timestamp_seconds{reader} gauge (absent before the first scan)
//	dockd_buffer_depth                          gauge, undelivered events
//	dockd_buffer_bytes                          gauge
//	dockd_buffer_oldest_age_seconds             gauge (0 when empty)
//	dockd_buffer_fill_ratio                     gauge
//	dockd_buffer_unconfirmed                    gauge, receipt delivery only: published, not receipted
//	dockd_buffer_unconfirmed_oldest_age_seconds gauge, receipt delivery only (0 when none)
//	dockd_broker_connected                      gauge 1/0 (absent without a broker)
//	dockd_allowlist_info{version}               gauge, always 1
//	dockd_allowlist_lots                        gauge
//	dockd_condition_active{condition}           gauge 1/0 per known condition
//	dockd_light_output_on{output}               gauge 1/0 (green, amber, red, buzzer)
//	dockd_station_info{station,site,door,direction,version} gauge, always 1
//	dockd_storage_written_bytes_total           counter, bytes the daemon caused to be written to storage (absent where unknown)
type Metrics struct {
	scans          *prometheus.CounterVec
	decodeErrors   *prometheus.CounterVec
	publishLatency prometheus.Histogram
}

// PublishLatencyBuckets are the histogram buckets of
// dockd_publish_latency_seconds: 1 ms to 30 s.
var PublishLatencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewMetrics creates the metrics and registers them, with a collector that
// reads src at scrape time, on reg. It fails if reg already holds metrics of
// the same names.
func NewMetrics(reg prometheus.Registerer, src Source) (*Metrics, error) {
	m := &Metrics{
		scans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dockd_scans_total", Help: "Scans decided, by decision and reason code.",
		}, []string{"decision", "reason"}),
		decodeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dockd_decode_errors_total", Help: "Scans that could not be read or decoded (bad_scan), by error kind.",
		}, []string{"kind"}),
		publishLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dockd_publish_latency_seconds", Help: "Time from publishing a custody event to the broker's PUBACK.",
			Buckets: PublishLatencyBuckets,
		}),
	}
	// Show the common series from the start, so rate() has a zero to start from.
	m.scans.WithLabelValues(string(dock.Accept), string(dock.ReasonOK))
	for _, c := range []prometheus.Collector{m.scans, m.decodeErrors, m.publishLatency, &stateCollector{src: src}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering status metrics: %w", err)
		}
	}
	return m, nil
}

// ObserveEvent counts one decided scan (dock_scans_total, and
// dockd_decode_errors_total for bad scans). Meant for station.Observe.
func (m *Metrics) ObserveEvent(ev dock.CustodyEvent) {
	m.scans.WithLabelValues(string(ev.Verdict), string(ev.Reason)).Inc()
	if ev.Reason == dock.ReasonBadScan {
		kind := ev.ErrorKind
		if kind == "" {
			kind = "unknown"
		}
		m.decodeErrors.WithLabelValues(kind).Inc()
	}
}

// ObservePublishLatency records one publish-to-PUBACK time.
func (m *Metrics) ObservePublishLatency(d time.Duration) {
	m.publishLatency.Observe(d.Seconds())
}

// conditions are the standing conditions exported as
// dockd_condition_active, always all of them.
var conditions = []dock.Condition{
	dock.ConditionReaderDown, dock.ConditionBrokerOffline, dock.ConditionBufferHigh,
	dock.ConditionBufferFull, dock.ConditionStorageFault,
}

var (
	descReaderUp      = prometheus.NewDesc("dockd_reader_up", "Whether the reader is connected and reading (1) or not (0).", []string{"reader"}, nil)
	descReaderLast    = prometheus.NewDesc("dockd_reader_last_scan_timestamp_seconds", "Unix time of the reader's last scan seen by the status page.", []string{"reader"}, nil)
	descBufDepth      = prometheus.NewDesc("dockd_buffer_depth", "Custody events stored and not yet acknowledged by the broker.", nil, nil)
	descBufBytes      = prometheus.NewDesc("dockd_buffer_bytes", "Payload bytes of the undelivered events.", nil, nil)
	descBufAge        = prometheus.NewDesc("dockd_buffer_oldest_age_seconds", "Age of the oldest undelivered event (0 when the buffer is empty).", nil, nil)
	descBufFill       = prometheus.NewDesc("dockd_buffer_fill_ratio", "Undelivered bytes as a fraction of the buffer budget.", nil, nil)
	descBufUnconf     = prometheus.NewDesc("dockd_buffer_unconfirmed", "Receipt delivery: events published to the broker that central has not receipted (still in the buffer).", nil, nil)
	descBufUnconfAge  = prometheus.NewDesc("dockd_buffer_unconfirmed_oldest_age_seconds", "Receipt delivery: seconds since the oldest unconfirmed event was first published (0 when none).", nil, nil)
	descBroker        = prometheus.NewDesc("dockd_broker_connected", "Whether the MQTT uplink is connected (1) or not (0).", nil, nil)
	descAllowlist     = prometheus.NewDesc("dockd_allowlist_info", "The active allowlist version (value always 1).", []string{"version"}, nil)
	descAllowlistLots = prometheus.NewDesc("dockd_allowlist_lots", "Lots in the active allowlist.", nil, nil)
	descCondition     = prometheus.NewDesc("dockd_condition_active", "Whether a standing condition is raised (1) or not (0).", []string{"condition"}, nil)
	descLight         = prometheus.NewDesc("dockd_light_output_on", "Whether a stack light output is energised (1) or not (0).", []string{"output"}, nil)
	descWritten       = prometheus.NewDesc("dockd_storage_written_bytes_total", "Bytes the daemon has caused to be written to storage since it started (/proc/self/io write_bytes; journald's log writes not included).", nil, nil)
	descStation       = prometheus.NewDesc("dockd_station_info", "The station's identity and direction (value always 1).", []string{"station", "site", "door", "direction", "version"}, nil)
)

// stateCollector turns a Snapshot into gauges at scrape time.
type stateCollector struct{ src Source }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReaderUp, descReaderLast, descBufDepth, descBufBytes, descBufAge, descBufFill,
		descBufUnconf, descBufUnconfAge, descBroker, descAllowlist, descAllowlistLots, descCondition, descLight, descStation, descWritten} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, r := range s.Readers {
		gauge(descReaderUp, b2f(r.Up), r.ID)
		if !r.LastScan.IsZero() {
			gauge(descReaderLast, float64(r.LastScan.UnixMilli())/1000, r.ID)
		}
	}
	gauge(descBufDepth, float64(s.Buffer.Depth))
	gauge(descBufBytes, float64(s.Buffer.Bytes))
	gauge(descBufAge, s.Buffer.OldestAgeS)
	gauge(descBufFill, s.Buffer.Fill)
	if s.Buffer.Unconfirmed != nil {
		gauge(descBufUnconf, float64(*s.Buffer.Unconfirmed))
		gauge(descBufUnconfAge, s.Buffer.UnconfirmedOldestAgeS)
	}
	if s.Broker.Configured {
		gauge(descBroker, b2f(s.Broker.Connected))
	}
	gauge(descAllowlist, 1, s.Allowlist.Version)
	gauge(descAllowlistLots, float64(s.Allowlist.Lots))
	active := map[dock.Condition]bool{}
	for _, cd := range s.Light.Conditions {
		active[cd] = true
	}
	for _, cd := range conditions {
		gauge(descCondition, b2f(active[cd]), string(cd))
	}
	gauge(descLight, b2f(s.Light.Green), "green")
	gauge(descLight, b2f(s.Light.Amber), "amber")
	gauge(descLight, b2f(s.Light.Red), "red")
	gauge(descLight, b2f(s.Light.Buzzer), "buzzer")
	gauge(descStation, 1, s.Station, s.Site, s.Door, string(s.Direction), s.Version)
	if s.Storage != nil {
		ch <- prometheus.MustNewConstMetric(descWritten, prometheus.CounterValue, float64(s.Storage.WrittenBytes))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
