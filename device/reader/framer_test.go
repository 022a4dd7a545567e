package reader

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dockd/dockd/internal/dock"
)

// out is one emitted frame, in a comparable form.
type out struct {
	data    string
	tooLong bool
}

func (o out) String() string { return fmt.Sprintf("{%q tooLong=%v}", o.data, o.tooLong) }

// feedAll runs input through a new Framer in chunks of size chunk (0 = all
// at once) and returns what it emitted.
func feedAll(t testing.TB, suffix Suffix, prefix string, maxFrame int, input []byte, chunk int) []out {
	t.Helper()
	f, err := NewFramer(suffix, []byte(prefix), maxFrame)
	if err != nil {
		t.Fatalf("NewFramer: %v", err)
	}
	var got []out
	emit := func(data []byte, err error) {
		if err != nil && !errors.Is(err, dock.ErrFrameTooLong) {
			t.Fatalf("unexpected frame error %v", err)
		}
		got = append(got, out{string(data), err != nil})
	}
	if chunk <= 0 {
		chunk = len(input) + 1
	}
	for len(input) > 0 {
		n := min(chunk, len(input))
		f.Feed(input[:n], emit)
		input = input[n:]
	}
	return got
}

func TestFramer(t *testing.T) {
	long := strings.Repeat("A", 10)
	tests := []struct {
		name   string
		suffix Suffix
		prefix string
		max    int
		in     string
		want   []out
	}{
		{"CR", SuffixCR, "", 100, "abc\rdef\r", []out{{"abc", false}, {"def", false}}},
		{"CR keeps LF as data", SuffixCR, "", 100, "abc\r\ndef\r", []out{{"abc", false}, {"\ndef", false}}},
		{"CR trailing partial held", SuffixCR, "", 100, "abc\rde", []out{{"abc", false}}},
		{"LF", SuffixLF, "", 100, "abc\ndef\n", []out{{"abc", false}, {"def", false}}},
		{"LF keeps CR as data", SuffixLF, "", 100, "abc\r\n", []out{{"abc\r", false}}},
		{"CRLF", SuffixCRLF, "", 100, "abc\r\ndef\r\n", []out{{"abc", false}, {"def", false}}},
		{"CRLF lone CR and LF are data", SuffixCRLF, "", 100, "a\rb\nc\r\n", []out{{"a\rb\nc", false}}},
		{"CRLF CR CR LF", SuffixCRLF, "", 100, "ab\r\r\n", []out{{"ab\r", false}}},
		{"CRLF LF CR LF", SuffixCRLF, "", 100, "\n\r\n", []out{{"\n", false}}},
		{"CRLF trailing CR pending", SuffixCRLF, "", 100, "ab\r", nil},
		{"empty frames dropped", SuffixCR, "", 100, "\r\r\rabc\r\r", []out{{"abc", false}}},
		{"CRLF empty frames dropped", SuffixCRLF, "", 100, "\r\n\r\nx\r\n\r\n", []out{{"x", false}}},
		{"prefix stripped", SuffixCR, "]C1", 100, "]C10104012345678901\r", []out{{"0104012345678901", false}}},
		{"prefix absent kept", SuffixCR, "]C1", 100, "0104012345678901\r", []out{{"0104012345678901", false}}},
		{"prefix stripped once", SuffixCR, "@", 100, "@@x\r", []out{{"@x", false}}},
		{"prefix only dropped", SuffixCR, "STX", 100, "STX\rSTXa\r", []out{{"a", false}}},
		{"prefix in middle kept", SuffixCR, "P", 100, "aPb\r", []out{{"aPb", false}}},
		{"NUL and binary pass", SuffixCR, "", 100, "\x00\x01\xff\xfe\x00\r", []out{{"\x00\x01\xff\xfe\x00", false}}},
		{"exactly max", SuffixCR, "", 10, long + "\r", []out{{long, false}}},
		{"max plus one", SuffixCR, "", 10, long + "B\rok\r", []out{{long, true}, {"ok", false}}},
		{"CRLF exactly max with pending CR", SuffixCRLF, "", 10, long + "\r\nok\r\n", []out{{long, false}, {"ok", false}}},
		{"CRLF lone CR overflows", SuffixCRLF, "", 10, long + "\rx\r\nok\r\n", []out{{long, true}, {"ok", false}}},
		{"max counts prefix", SuffixCR, "PP", 4, "PPabc\rPPab\r", []out{{"PPab", true}, {"ab", false}}},
		{"too-long keeps first 64", SuffixLF, "", 70, strings.Repeat("x", 100) + "\n", []out{{strings.Repeat("x", 64), true}}},
		{"too-long head bounded by max", SuffixLF, "", 3, "abcdef\n", []out{{"abc", true}}},
	}
	for _, tc := range tests {
		for _, chunk := range []int{0, 1, 2, 3, 7} {
			t.Run(fmt.Sprintf("%s/chunk=%d", tc.name, chunk), func(t *testing.T) {
				got := feedAll(t, tc.suffix, tc.prefix, tc.max, []byte(tc.in), chunk)
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("got %v\nwant %v", got, tc.want)
				}
			})
		}
	}
}

func TestFramerTooLongError(t *testing.T) {
	f, err := NewFramer(SuffixCR, nil, 8)
	if err != nil {
		t.Fatal(err)
	}
	var gotErr error
	f.Feed([]byte(strings.Repeat("z", 1000)+"\r"), func(_ []byte, err error) { gotErr = err })
	if !errors.Is(gotErr, dock.ErrFrameTooLong) {
		t.Fatalf("err = %v, want ErrFrameTooLong", gotErr)
	}
	if !strings.Contains(gotErr.Error(), "1000 bytes") || !strings.Contains(gotErr.Error(), "limit 8") {
		t.Errorf("error %q should give the length and the limit", gotErr)
	}
}

// A 1 MiB line fed in small chunks is reported once, and the Framer never
// holds more than max + TooLongKeep bytes.
func TestFramerHugeLineBoundedMemory(t *testing.T) {
	const maxFrame = 4096
	f, err := NewFramer(SuffixCR, nil, maxFrame)
	if err != nil {
		t.Fatal(err)
	}
	var got []out
	emit := func(d []byte, err error) { got = append(got, out{string(d), err != nil}) }
	chunk := bytes.Repeat([]byte{'Q'}, 1000)
	for i := 0; i < (1<<20)/len(chunk)+1; i++ {
		f.Feed(chunk, emit)
		if c := cap(f.buf) + cap(f.overHead); c > maxFrame+TooLongKeep {
			t.Fatalf("framer holds %d bytes of buffer after %d KB", c, i)
		}
	}
	f.Feed([]byte("\rGOOD\r"), emit)
	want := []out{{strings.Repeat("Q", TooLongKeep), true}, {"GOOD", false}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestFramerDataDoesNotAlias(t *testing.T) {
	f, err := NewFramer(SuffixCR, []byte("P"), 100)
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	emit := func(d []byte, _ error) { frames = append(frames, d) }
	in := []byte("Pabc\rPdef\r")
	f.Feed(in, emit)
	copy(in, "XXXXXXXXXX")
	f.Feed([]byte("Pghi\r"), emit)
	for i := range frames {
		frames[i] = append(frames[i], "!!!!"...) // appending must not clobber a neighbour
	}
	want := []string{"abc!!!!", "def!!!!", "ghi!!!!"}
	for i, w := range want {
		if string(frames[i]) != w {
			t.Errorf("frame %d = %q, want %q", i, frames[i], w)
		}
	}
}

func TestFramerReset(t *testing.T) {
	tests := []struct {
		name, before string
	}{
		{"partial", "abc"},
		{"pending CR", "abc\r"},
		{"oversize", strings.Repeat("x", 50)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewFramer(SuffixCRLF, nil, 10)
			if err != nil {
				t.Fatal(err)
			}
			var got []out
			emit := func(d []byte, err error) { got = append(got, out{string(d), err != nil}) }
			f.Feed([]byte(tc.before), emit)
			if f.Buffered() == 0 {
				t.Errorf("Buffered() = 0 after %q", tc.before)
			}
			f.Reset()
			if f.Buffered() != 0 {
				t.Errorf("Buffered() = %d after Reset", f.Buffered())
			}
			f.Feed([]byte("\nnew\r\n"), emit)
			if want := []out{{"\nnew", false}}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

func TestNewFramerRejects(t *testing.T) {
	tests := []struct {
		name   string
		suffix Suffix
		max    int
	}{
		{"bad suffix", "NUL", 10},
		{"empty suffix", "", 10},
		{"zero max", SuffixCR, 0},
		{"negative max", SuffixLF, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewFramer(tc.suffix, nil, tc.max); !errors.Is(err, ErrConfig) {
				t.Errorf("NewFramer(%q, %d) error = %v, want ErrConfig", tc.suffix, tc.max, err)
			}
		})
	}
}

// FuzzFramer checks, for arbitrary input, chunking, terminator and limit:
// no panic, no frame longer than the limit, no empty frame, chunking does
// not change the output, and the concatenation law: when no line is
// oversize, the frames joined equal the input with terminators removed.
func FuzzFramer(f *testing.F) {
	f.Add([]byte("abc\rdef\r"), uint8(0), uint8(3), uint16(100))
	f.Add([]byte("a\r\nb\r\r\n\n"), uint8(2), uint8(1), uint16(4))
	f.Add([]byte("\x00\xff\n\n\nxyz"), uint8(1), uint8(0), uint16(1))
	f.Add(bytes.Repeat([]byte("0123456789"), 50), uint8(2), uint8(7), uint16(64))
	f.Fuzz(func(t *testing.T, in []byte, suffixSel, chunk uint8, maxFrame uint16) {
		suffix := []Suffix{SuffixCR, SuffixLF, SuffixCRLF}[int(suffixSel)%3]
		term := map[Suffix]string{SuffixCR: "\r", SuffixLF: "\n", SuffixCRLF: "\r\n"}[suffix]
		limit := int(maxFrame)%4096 + 1
		// Terminate the input so every byte belongs to an emitted frame.
		in = append(bytes.Clone(in), term...)

		whole := feedAll(t, suffix, "", limit, in, 0)
		chunked := feedAll(t, suffix, "", limit, in, int(chunk)%17+1)
		if fmt.Sprint(whole) != fmt.Sprint(chunked) {
			t.Fatalf("chunking changed output:\n%v\n%v", whole, chunked)
		}

		oversize := false
		for _, line := range strings.Split(string(in), term) {
			if len(line) > limit {
				oversize = true
			}
		}
		var joined strings.Builder
		for _, o := range whole {
			if o.data == "" {
				t.Fatalf("empty frame emitted: %v", whole)
			}
			if len(o.data) > limit {
				t.Fatalf("frame of %d bytes exceeds limit %d", len(o.data), limit)
			}
			if o.tooLong && !oversize {
				t.Fatalf("too-long frame without an oversize line (limit %d): %v", limit, whole)
			}
			joined.WriteString(o.data)
		}
		if !oversize {
			if want := strings.ReplaceAll(string(in), term, ""); joined.String() != want {
				t.Fatalf("joined frames %q, want %q", joined.String(), want)
			}
		}
	})
}
