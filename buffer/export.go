package buffer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// exportChunk is how many records Export reads per read transaction, so a
// slow writer never holds a long transaction open against the writer.
const exportChunk = 1000

// importWindow is how many Import appends may wait for their commit at once.
const importWindow = 512

// exportLine is one line of the export format.
type exportLine struct {
	Seq      uint64          `json:"seq"`
	At       time.Time       `json:"at"`
	Encoding string          `json:"encoding,omitempty"` // "base64" when Payload is a base64 string
	Payload  json.RawMessage `json:"payload"`
}

// Export writes every record that is undelivered when it starts, oldest
// first, as JSON Lines: {"seq":N,"at":"RFC 3339","payload":P}. P is the
// payload itself when it is compact JSON (so its bytes are kept exactly);
// otherwise it is a base64 string and the line carries "encoding":"base64".
// Records acked during the export may be missing from it; records appended
// after it started are not included. progress, if not nil, is called after
// each chunk with the records written so far and the total expected.
// Export does not delete anything.
func (q *Queue) Export(w io.Writer, progress func(done, total int)) error {
	st := q.Stats()
	total, last := st.Depth, st.NewestSeq
	bw := bufio.NewWriterSize(w, 64<<10)
	var after uint64
	done := 0
	line := make([]byte, 0, 1024)
	for after < last {
		recs, err := q.Pending(after, exportChunk)
		if err != nil {
			return fmt.Errorf("buffer: export: %w", err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			if r.Seq > last {
				after = last
				break
			}
			line = appendExportLine(line[:0], r)
			if _, err := bw.Write(line); err != nil {
				return fmt.Errorf("buffer: export: writing record %d: %w", r.Seq, err)
			}
			done++
			after = r.Seq
		}
		if progress != nil {
			progress(done, max(total, done))
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("buffer: export: flushing after %d records: %w", done, err)
	}
	return nil
}

func appendExportLine(b []byte, r Record) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"at":"`...)
	b = r.At.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if isCompactJSON(r.Payload) {
		b = append(b, `,"payload":`...)
		b = append(b, r.Payload...)
	} else {
		b = append(b, `,"encoding":"base64","payload":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.Payload)
		b = append(b, '"')
	}
	return append(b, '}', '\n')
}

// isCompactJSON reports whether p is valid JSON that the encoder would not
// change, so it can be embedded verbatim and read back byte for byte.
func isCompactJSON(p []byte) bool {
	if len(p) == 0 || !json.Valid(p) {
		return false
	}
	var c bytes.Buffer
	if err := json.Compact(&c, p); err != nil {
		return false
	}
	return bytes.Equal(c.Bytes(), p)
}

// Import reads an Export stream and appends each record as a new record of
// this queue, in stream order, with new sequence numbers and the append
// time of now; payload bytes are kept exactly (a payload that embeds the
// source box's seq keeps it). Appends are pipelined so they share group
// commits. It returns how many records were durably stored. On the first
// error Import stops reading; appends already handed to the writer still
// complete and are counted, so the count is exact but may include a few
// records after the failing one. progress, if not nil, is called with the
// running count. Importing the same stream twice stores its records twice.
func (q *Queue) Import(r io.Reader, progress func(done int)) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var waits []func() result
	stored := 0
	var firstErr error

	// settle waits for the oldest outstanding append.
	settle := func() {
		res := waits[0]()
		waits = waits[1:]
		if res.err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("buffer: import: %w", res.err)
			}
			return
		}
		stored++
		if progress != nil && stored%exportChunk == 0 {
			progress(stored)
		}
	}

	lineNo := 0
	for firstErr == nil {
		raw, rerr := br.ReadBytes('\n')
		if len(bytes.TrimSpace(raw)) > 0 {
			lineNo++
			payload, err := parseExportLine(raw)
			if err != nil {
				firstErr = fmt.Errorf("buffer: import: line %d: %w", lineNo, err)
				break
			}
			wait, err := q.submit(context.Background(), &request{
				build: func(uint64) ([]byte, error) { return payload, nil },
				res:   make(chan result, 1),
			})
			if err != nil {
				firstErr = fmt.Errorf("buffer: import: line %d: %w", lineNo, err)
				break
			}
			waits = append(waits, wait)
			if len(waits) >= importWindow {
				settle()
			}
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				firstErr = fmt.Errorf("buffer: import: reading line %d: %w", lineNo+1, rerr)
			}
			break
		}
	}
	for len(waits) > 0 {
		settle()
	}
	if progress != nil {
		progress(stored)
	}
	return stored, firstErr
}

func parseExportLine(raw []byte) ([]byte, error) {
	var l exportLine
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	if len(l.Payload) == 0 {
		return nil, fmt.Errorf("record %d: no payload", l.Seq)
	}
	switch l.Encoding {
	case "":
		return []byte(l.Payload), nil
	case "base64":
		var s string
		if err := json.Unmarshal(l.Payload, &s); err != nil {
			return nil, fmt.Errorf("record %d: base64 payload is not a string: %w", l.Seq, err)
		}
		p, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("record %d: decoding base64 payload: %w", l.Seq, err)
		}
		return p, nil
	default:
		return nil, fmt.Errorf("record %d: unknown encoding %q", l.Seq, l.Encoding)
	}
}
