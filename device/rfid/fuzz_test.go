package rfid_test

import (
	"encoding/binary"
	"testing"

	"github.com/dockd/dockd/device/rfid"
)

// FuzzSplitter feeds arbitrary bytes, in arbitrary chunks, to the Mercury
// frame splitter and tag parser: nothing may panic, and every frame that
// comes out must be well formed with a CRC that an independent bitwise CRC
// accepts.
func FuzzSplitter(f *testing.F) {
	f.Add(unhex(f, docTagRead), uint8(0))
	f.Add(unhex(f, docDisableFilter), uint8(3))
	f.Add(append(unhex(f, "13 37 FF FF 05"), unhex(f, docTagRead)...), uint8(1))
	f.Add([]byte{0xFF, 0x00, 0x22, 0x04, 0x00, 0x00, 0x00}, uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		for _, status := range []bool{true, false} {
			sp := rfid.NewSplitter(status)
			over := 5
			if status {
				over = 7
			}
			step := int(chunk%16) + 1
			for i := 0; i < len(in); i += step {
				sp.Feed(in[i:min(i+step, len(in))], func(fr rfid.MercuryFrame) {
					raw := fr.Raw
					if len(raw) < over || raw[0] != 0xFF || int(raw[1])+over != len(raw) {
						t.Fatalf("bad frame shape % X", raw)
					}
					if binary.BigEndian.Uint16(raw[len(raw)-2:]) != bitCRC(raw[1:len(raw)-2]) {
						t.Fatalf("frame with bad CRC accepted: % X", raw)
					}
					if fr.Opcode != raw[2] || len(fr.Data) != int(raw[1]) {
						t.Fatalf("frame fields disagree with raw: %+v", fr)
					}
					if rfid.IsTagFrame(fr) {
						tags, err := rfid.ParseTagFrame(fr)
						for _, tg := range tags {
							if err != nil || len(tg.EPC) > len(fr.Data) {
								t.Fatalf("tag %+v with err %v", tg, err)
							}
						}
					}
				})
			}
			if sp.Buffered() > len(in) || sp.Buffered() > 262+step {
				t.Fatalf("splitter holds %d bytes", sp.Buffered())
			}
		}
	})
}
