package reader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/testkit"
)

// BenchmarkFramer measures framing throughput (MB/s) on typical GS1 codes
// and on long lines, for each terminator, fed in 4 KiB reads as from the
// port.
func BenchmarkFramer(b *testing.B) {
	inputs := []struct {
		name string
		line string
	}{
		{"gs1-43B", "]C10109501101530003\x1d10LOT-7\x1d17271231\x1d21SN123"},
		{"line-1KiB", string(bytes.Repeat([]byte("X"), 1024))},
	}
	for _, in := range inputs {
		for _, sfx := range []struct {
			s    Suffix
			term string
		}{{SuffixCR, "\r"}, {SuffixLF, "\n"}, {SuffixCRLF, "\r\n"}} {
			b.Run(fmt.Sprintf("%s/%s", in.name, sfx.s), func(b *testing.B) {
				stream := bytes.Repeat([]byte(in.line+sfx.term), (1<<20)/(len(in.line)+len(sfx.term))+1)
				f, err := NewFramer(sfx.s, []byte("]C1"), DefaultMaxFrame)
				if err != nil {
					b.Fatal(err)
				}
				frames := 0
				emit := func([]byte, error) { frames++ }
				b.SetBytes(int64(len(stream)))
				b.ReportAllocs()
				for b.Loop() {
					for rest := stream; len(rest) > 0; {
						n := min(len(rest), readBufSize)
						f.Feed(rest[:n], emit)
						rest = rest[n:]
					}
				}
				if frames == 0 {
					b.Fatal("no frames")
				}
			})
		}
	}
}

// BenchmarkSerialPTY measures frames/s end to end through a real pty opened
// with go.bug.st/serial at a 115200 baud setting. A pty ignores the baud
// rate, so this is the software ceiling, not what a 115200 line carries
// (about 11,500 bytes/s, i.e. ~260 43-byte codes/s).
func BenchmarkSerialPTY(b *testing.B) {
	p := testkit.NewPTY(b)
	r, err := NewSerial(Config{ID: "bench", Port: p.Path(), Baud: 115200}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	frames := make(chan dock.Frame, 1024)
	states := make(chan dock.ReaderState, 4)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, frames, states) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			b.Errorf("Run: %v", err)
		}
	}()
	if st := <-states; !st.Up {
		b.Fatalf("state %+v", st)
	}
	code := []byte("]C10109501101530003\x1d10LOT-7\x1d17271231\x1d21SN123\r")
	const batch = 64
	chunk := bytes.Repeat(code, batch)

	b.SetBytes(int64(len(code)))
	b.ResetTimer()
	writeErr := make(chan error, 1)
	go func() {
		for sent := 0; sent < b.N; sent += batch {
			n := min(batch, b.N-sent)
			if err := p.Write(chunk[:n*len(code)]); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	}()
	for i := 0; i < b.N; i++ {
		f := <-frames
		if f.Err != nil || len(f.Data) != len(code)-1 {
			b.Fatalf("frame %d: %q %v", i, f.Data, f.Err)
		}
	}
	b.StopTimer()
	if err := <-writeErr; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}
