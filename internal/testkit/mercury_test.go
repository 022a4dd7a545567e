//go:build linux

package testkit

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"
	"time"
)

func TestEmuCRCDocumentedVector(t *testing.T) {
	// FF 03 9A 01 0C 00 A3 5D: "disable read filter" as logged from an M6e Nano.
	if got := emuCRC([]byte{0x03, 0x9A, 0x01, 0x0C, 0x00}); got != 0xA35D {
		t.Errorf("emuCRC = %04X, want A35D", got)
	}
}

func command(op byte, data ...byte) []byte {
	f := append([]byte{0xFF, byte(len(data)), op}, data...)
	return binary.BigEndian.AppendUint16(f, emuCRC(f[1:]))
}

// readFrame reads one module→host frame from the slave side.
func readFrame(t *testing.T, f *os.File) []byte {
	t.Helper()
	if err := f.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var buf []byte
	one := make([]byte, 1)
	for len(buf) < 2 || len(buf) < int(buf[1])+7 {
		if _, err := f.Read(one); err != nil {
			t.Fatalf("reading response (have % X): %v", buf, err)
		}
		if len(buf) == 0 && one[0] != 0xFF {
			continue
		}
		buf = append(buf, one[0])
	}
	if binary.BigEndian.Uint16(buf[len(buf)-2:]) != emuCRC(buf[1:len(buf)-2]) {
		t.Fatalf("response % X has a bad CRC", buf)
	}
	return buf
}

func TestMercuryEmulatorCommands(t *testing.T) {
	p := NewPTY(t)
	m := NewMercury(t, p, MercuryConfig{})
	slave, err := os.OpenFile(p.TTY(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	send := func(b []byte) {
		if _, err := slave.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name       string
		cmd        []byte
		wantOp     byte
		wantStatus uint16
	}{
		{"version", command(0x03), 0x03, 0},
		{"region EU", command(0x97, 0x08), 0x97, 0},
		{"unknown region", command(0x97, 0x42), 0x97, 0x0105},
		{"power 27 dBm", command(0x92, 0x0A, 0x8C), 0x92, 0},
		{"power too high", command(0x92, 0x0B, 0xB8), 0x92, 0x0103},
		{"wrong length", command(0x97), 0x97, 0x0100},
		{"unknown opcode", command(0x55), 0x55, 0x0101},
	}
	for _, tc := range tests {
		send(tc.cmd)
		r := readFrame(t, slave)
		if r[2] != tc.wantOp || binary.BigEndian.Uint16(r[3:5]) != tc.wantStatus {
			t.Errorf("%s: response % X, want opcode %02X status %04X", tc.name, r, tc.wantOp, tc.wantStatus)
		}
	}
	if m.Region() != 0x08 || m.ReadPower() != 2700 {
		t.Errorf("state %v", m)
	}
	// A command with a bad CRC is ignored: the next answer is for the next command.
	bad := command(0x03)
	bad[len(bad)-1] ^= 1
	send(bad)
	send(command(0x97, 0x0D))
	if r := readFrame(t, slave); r[2] != 0x97 || m.BadCommands() != 1 {
		t.Errorf("after a bad-CRC command got % X, bad commands %d", r, m.BadCommands())
	}
	// Start reading with metadata RSSI|antenna; a queued tag comes back in that layout.
	start := []byte{0, 0, 1, 0x22, 0, 0, 5, 7, 0x22, 0x10, 0, 0x1B, 0x03, 0xE8, 0x00, 0x06}
	send(command(0x2F, start...))
	if r := readFrame(t, slave); r[2] != 0x2F || !m.Reading() {
		t.Fatalf("start: % X reading=%v", r, m.Reading())
	}
	m.Emit(MercuryTag{EPC: "3074257BF7194E4000001A85", RSSI: -61, Antenna: 2})
	var tag []byte
	for tag == nil {
		if r := readFrame(t, slave); r[1] != 0 { // skip keep-alives
			tag = r
		}
	}
	want := []byte{0x10, 0x00, 0x1B, 0x00, 0x06, 0x01, byte(0xC3), 0x22, 0x00, 0x80, 0x30, 0x00}
	if !bytes.Equal(tag[5:5+len(want)], want) || !bytes.Equal(tag[5+len(want):5+len(want)+12], []byte{0x30, 0x74, 0x25, 0x7B, 0xF7, 0x19, 0x4E, 0x40, 0x00, 0x00, 0x1A, 0x85}) {
		t.Errorf("tag frame % X", tag)
	}
	// Stalled: no answers at all.
	m.Stall()
	send(command(0x03))
	if err := slave.SetReadDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	var drained []byte
	buf := make([]byte, 512)
	for {
		n, err := slave.Read(buf)
		drained = append(drained, buf[:n]...)
		if err != nil {
			break
		}
	}
	// Frames written before the stall took effect may arrive; no version answer may.
	if bytes.Contains(drained, []byte{0xFF, 0x14, 0x03}) {
		t.Errorf("stalled module answered: % X", drained)
	}
	m.Resume()
	send(command(0x2F, 0, 0, 2))
	for {
		if r := readFrame(t, slave); r[2] == 0x2F {
			break
		}
	}
	if m.Reading() {
		t.Error("still reading after stop")
	}
}
