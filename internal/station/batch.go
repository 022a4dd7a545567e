package station

import (
	"context"
	"log/slog"
	"time"

	"github.com/dockd/dockd/internal/dock"
)

// BatchOutbox is an Outbox that can take several events at once, in order,
// so they share one durable commit (buffer group commit). seqs[i] and
// errs[i] are builds[i]'s outcome with Append's meaning.
type BatchOutbox interface {
	Outbox
	AppendBatch(ctx context.Context, builds []func(seq uint64) ([]byte, error)) (seqs []uint64, errs []error)
}

// maxBatch caps how many waiting frames Run takes at once.
const maxBatch = 1024

// FrameQueue is how many frames the readers may queue ahead of the
// pipeline (the capacity of Run's frames channel). While a batch commits,
// the next one gathers here: at two RFID readers' ~7,000 lines/s it holds
// about half a second of a stalled commit (a slow SD-card fsync) before a
// reader has to stop reading its port.
const FrameQueue = 4096

// burstQuiet is how long the pipeline must be idle before a burst's
// summary line is logged.
const burstQuiet = 200 * time.Millisecond

// processBatch runs frames that arrived together. A lone frame (no burst
// under way) is Process with its own info line. Otherwise frames are
// decided in order in runs whose decisions cannot depend on each other,
// each run is appended as one batch (one commit), and every event is
// recorded and lit after that commit — never before its own durable append.
// A run ends before a frame that an earlier accepted frame of the run could
// change the decision of: the same serial or pallet, or any frame while
// expected shipments are open at the door (line counts). That frame is
// decided again, against the recorded state, in the next run.
func (s *Station) processBatch(ctx context.Context, fs []dock.Frame, b *burstLog) {
	if len(fs) == 1 && b.n == 0 {
		s.Process(ctx, fs[0])
		return
	}
	bo, batched := s.out.(BatchOutbox)
	evs := make([]dock.CustodyEvent, 0, len(fs))
	builds := make([]func(uint64) ([]byte, error), 0, len(fs))
	keys := map[string]bool{}
	for len(fs) > 0 {
		evs, builds = evs[:0], builds[:0]
		clear(keys)
		dependent := false // an accepted frame of this run changes shipment counts
		for len(evs) < len(fs) {
			ev, shipments := s.decide(fs[len(evs)])
			ks := custodyKeys(ev)
			if len(evs) > 0 && (dependent || anyIn(ks, keys)) {
				break
			}
			evs = append(evs, ev)
			builds = append(builds, eventBuild(ev))
			if ev.Verdict == dock.Accept || ev.Verdict == dock.Warn {
				for _, k := range ks {
					keys[k] = true
				}
				dependent = dependent || shipments
			}
		}
		var seqs []uint64
		var errs []error
		if batched {
			seqs, errs = bo.AppendBatch(ctx, builds)
		} else {
			seqs, errs = make([]uint64, len(builds)), make([]error, len(builds))
			for i, build := range builds {
				seqs[i], errs[i] = s.out.Append(ctx, build)
			}
		}
		for i, ev := range evs {
			ev, err := s.finish(fs[i], ev, seqs[i], errs[i], false)
			b.add(ev, err)
		}
		fs = fs[len(evs):]
	}
}

// custodyKeys names the custody records an accepted ev would change.
func custodyKeys(ev dock.CustodyEvent) []string {
	var ks []string
	if ev.GTIN != "" && ev.Serial != "" {
		ks = append(ks, "s"+ev.GTIN+"\x00"+ev.Serial)
	}
	if ev.SSCC != "" {
		ks = append(ks, "x"+ev.SSCC)
	}
	return ks
}

func anyIn(ks []string, set map[string]bool) bool {
	for _, k := range ks {
		if set[k] {
			return true
		}
	}
	return false
}

// burstLog sums a burst's decisions for one summary line (each decision is
// logged on its own only at debug level). Owned by Run's goroutine.
type burstLog struct {
	n, refused     int
	firstSeq, last uint64
	start          time.Time
	verdicts       map[dock.Verdict]int
	reasons        map[dock.Reason]int
	readers        map[string]int
}

func (b *burstLog) add(ev dock.CustodyEvent, err error) {
	if b.n == 0 {
		b.start = time.Now()
		b.verdicts, b.reasons, b.readers = map[dock.Verdict]int{}, map[dock.Reason]int{}, map[string]int{}
		b.firstSeq, b.last = 0, 0
	}
	b.n++
	if err != nil {
		b.refused++
	} else {
		if b.firstSeq == 0 {
			b.firstSeq = ev.Seq
		}
		b.last = ev.Seq
	}
	b.verdicts[ev.Verdict]++
	b.reasons[ev.Reason]++
	b.readers[ev.Reader]++
}

// flush logs the burst's summary — how many decisions, by verdict, reason
// and reader, and the range of sequence numbers stored — and resets it.
func (b *burstLog) flush(log *slog.Logger) {
	if b.n == 0 {
		return
	}
	log.Info("decisions", "decided", b.n, "refused", b.refused, "first_seq", b.firstSeq, "last_seq", b.last,
		"verdicts", b.verdicts, "reasons", b.reasons, "readers", b.readers, "duration", time.Since(b.start).Round(time.Millisecond))
	b.n = 0
}
