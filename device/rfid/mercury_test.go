package rfid_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/dockd/dockd/device/rfid"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex in test: %v", err)
	}
	return b
}

// bitCRC is an independent bit-at-a-time statement of the Mercury CRC.
func bitCRC(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		for i := 7; i >= 0; i-- {
			top := crc & 0x8000
			crc = crc<<1 | uint16(c>>i&1)
			if top != 0 {
				crc ^= 0x1021
			}
		}
	}
	return crc
}

// Frames published byte for byte in public M6e Nano material (SparkFun's
// notes on the module's transport logs).
const (
	// disable read filter: FF 03 9A 01 0C 00 A3 5D
	docDisableFilter = "FF 03 9A 01 0C 00 A3 5D"
	// a streamed tag read with metadata 0x01FF, RSSI 0xC4, antenna 0x11
	docTagRead = `FF 28 22 00 00 10 00 1B 01 FF 01 01 C4 11 0E 16
	              40 00 00 01 27 00 00 05 00 00 0F 00 80 30 00 00
	              00 00 00 00 00 00 00 00 00 15 45 E9 4A 56 1D`
)

func TestMercuryCRC(t *testing.T) {
	tests := []struct {
		name  string
		frame string
	}{
		{"disable read filter", docDisableFilter},
		{"set reader option 0x08", "FF 03 9A 01 08 00 A7 5D"},
		{"documented tag read", docTagRead},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := unhex(t, tc.frame)
			got := rfid.MercuryCRC(f[1 : len(f)-2])
			want := uint16(f[len(f)-2])<<8 | uint16(f[len(f)-1])
			if got != want {
				t.Errorf("MercuryCRC = %04X, want %04X", got, want)
			}
		})
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		b := make([]byte, r.IntN(300))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if got, want := rfid.MercuryCRC(b), bitCRC(b); got != want {
			t.Fatalf("MercuryCRC(% X) = %04X, bitwise %04X", b, got, want)
		}
	}
}

func TestEncodeCommand(t *testing.T) {
	got, err := rfid.EncodeCommand(rfid.OpSetReaderConfig, []byte{0x01, 0x0C, 0x00})
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, docDisableFilter); !bytes.Equal(got, want) {
		t.Errorf("EncodeCommand = % X, want % X", got, want)
	}
	if _, err := rfid.EncodeCommand(0x03, make([]byte, 256)); err == nil {
		t.Error("256 data bytes accepted")
	}
}

func TestParseDocumentedTagRead(t *testing.T) {
	var frames []rfid.MercuryFrame
	sp := rfid.NewSplitter(true)
	sp.Feed(unhex(t, docTagRead), func(f rfid.MercuryFrame) { frames = append(frames, f) })
	if len(frames) != 1 {
		t.Fatalf("got %d frames, want 1 (crc errors %d)", len(frames), sp.CRCErrors)
	}
	if !rfid.IsTagFrame(frames[0]) {
		t.Fatal("IsTagFrame = false")
	}
	tags, err := rfid.ParseTagFrame(frames[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(tags) != 1 {
		t.Fatalf("%d tags", len(tags))
	}
	tg := tags[0]
	if got := hex.EncodeToString(tg.EPC); got != "000000000000000000001545" {
		t.Errorf("EPC %s", got)
	}
	if tg.RSSI != -60 || !tg.HasRSSI || tg.Antenna != 1 || tg.FreqKHz != 923200 || tg.Timestamp != 0x127 ||
		tg.Phase != 0 || tg.Protocol != 5 || tg.PC != 0x3000 || tg.ReadCount != 1 {
		t.Errorf("parsed %+v", tg)
	}
}

// TestParseAllMetadata uses the layout of a documented frame with
// metadata 0x0FFF (18 bytes of embedded data, GPIO, Gen2 Q/LF/target); the
// CRC is computed here because the source shows the frame without it.
func TestParseAllMetadata(t *testing.T) {
	body := unhex(t, `3D 22 00 00 10 01 1F 0F FF 01 01 DD 11 0D 37 FC 00 00 00 B3 00 AE 05 00 90
		FF 00 06 2F 80 29 01 0E 01 54 00 0D 5F FB FF FF DC 00
		80 02 00 00 00 80 34 00 E2 00 00 15 86 0E 02 88 15 40 80 29 3B 72`)
	f := append([]byte{0xFF}, body...)
	c := bitCRC(body)
	f = append(f, byte(c>>8), byte(c))
	var frames []rfid.MercuryFrame
	rfid.NewSplitter(true).Feed(f, func(mf rfid.MercuryFrame) { frames = append(frames, mf) })
	if len(frames) != 1 {
		t.Fatalf("%d frames", len(frames))
	}
	tags, err := rfid.ParseTagFrame(frames[0])
	if err != nil {
		t.Fatal(err)
	}
	tg := tags[0]
	if hex.EncodeToString(tg.EPC) != "e2000015860e028815408029" || tg.RSSI != -35 || tg.Phase != 0xAE || tg.Antenna != 1 {
		t.Errorf("parsed %+v EPC %X", tg, tg.EPC)
	}
}

func TestParseTagFrameMalformed(t *testing.T) {
	good := unhex(t, docTagRead)
	data := good[5 : len(good)-2]
	tests := []struct {
		name   string
		mutate func([]byte) []byte
	}{
		{"too short", func(d []byte) []byte { return d[:4] }},
		{"unknown metadata flag", func(d []byte) []byte { d[3] |= 0x10; return d }},
		{"zero tags", func(d []byte) []byte { d[5] = 0; return d }},
		{"truncated EPC", func(d []byte) []byte { return d[:len(d)-3] }},
		{"EPC length not whole bytes", func(d []byte) []byte { d[23] = 0x7F; return d }},
		{"trailing bytes", func(d []byte) []byte { return append(d, 0x00) }},
		{"truncated metadata", func(d []byte) []byte { return d[:9] }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.mutate(append([]byte(nil), data...))
			_, err := rfid.ParseTagFrame(rfid.MercuryFrame{Opcode: 0x22, Data: d})
			if !errors.Is(err, rfid.ErrMalformed) {
				t.Errorf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestSplitterResync(t *testing.T) {
	good := unhex(t, docTagRead)
	bad := append([]byte(nil), good...)
	bad[12] ^= 0x01                    // RSSI bit flip: CRC no longer matches
	keep := unhex(t, "FF 00 22 04 00") // keep-alive: no tags found
	keep = append(keep, byte(bitCRC(keep[1:])>>8), byte(bitCRC(keep[1:])))
	var stream []byte
	stream = append(stream, 0x13, 0x37) // line noise
	stream = append(stream, good...)
	stream = append(stream, bad...)
	stream = append(stream, keep...)
	stream = append(stream, good...)

	for _, chunk := range []int{len(stream), 1, 7} {
		sp := rfid.NewSplitter(true)
		var got []rfid.MercuryFrame
		for i := 0; i < len(stream); i += chunk {
			sp.Feed(stream[i:min(i+chunk, len(stream))], func(f rfid.MercuryFrame) { got = append(got, f) })
		}
		if len(got) != 3 || !bytes.Equal(got[0].Raw, good) || got[1].Status != 0x0400 || !bytes.Equal(got[2].Raw, good) {
			t.Errorf("chunk %d: got %d frames", chunk, len(got))
		}
		if sp.CRCErrors != 1 {
			t.Errorf("chunk %d: CRCErrors = %d, want 1", chunk, sp.CRCErrors)
		}
		if sp.JunkBytes != uint64(2+len(bad)) {
			t.Errorf("chunk %d: JunkBytes = %d, want %d", chunk, sp.JunkBytes, 2+len(bad))
		}
		if sp.Buffered() != 0 {
			t.Errorf("chunk %d: %d bytes left buffered", chunk, sp.Buffered())
		}
	}
}
