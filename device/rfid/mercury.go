package rfid

// The ThingMagic / JADAK "Mercury" serial protocol, as used by the M6e
// Nano (and the M6e / M7e family) over a UART, written from the public
// descriptions of the protocol (the Mercury API serial reader sources as
// described in ThingMagic's documentation, and SparkFun's "Simultaneous
// RFID Tag Reader" notes, which document the M6e Nano frames byte by byte).
//
// Facts this file relies on (confident):
//   - Host→module frame: 0xFF, LEN, OPCODE, DATA[LEN], CRC_HI, CRC_LO.
//   - Module→host frame: 0xFF, LEN, OPCODE, STATUS_HI, STATUS_LO, DATA[LEN],
//     CRC_HI, CRC_LO. LEN counts DATA only (not the status word).
//   - CRC: 16 bits, polynomial 0x1021, register preset 0xFFFF, bits fed MSB
//     first into the low end of the register with no final XOR (ThingMagic's
//     own variant; it is not the common CRC-16/CCITT-FALSE), computed over
//     LEN..DATA (everything after the 0xFF header, before the CRC), sent big
//     endian. Known vector: FF 03 9A 01 0C 00 → CRC A3 5D.
//   - Status 0x0000 is success.
//   - Opcodes: 0x03 get version, 0x22 read tag ID multiple (also the opcode
//     of streamed tag reads), 0x2F multi-protocol tag operation (start/stop
//     continuous reading), 0x91 set antenna port, 0x92 set read TX power
//     (u16 centi-dBm), 0x93 set tag protocol (u16, Gen2 = 0x0005), 0x97 set
//     region (u8), 0x9A set reader configuration (key/value).
//   - Region codes: IN 0x04, JP 0x05, PRC 0x06, EU3 0x08, KR2 0x09, AU 0x0B,
//     NZ 0x0C, NA2 0x0D, OPEN 0xFF.
//   - Continuous reading start: 0x2F with 00 00 (timeout, 0 = none), 01
//     (option: start continuous), 22 (sub-opcode), 00 00 (search flags),
//     05 (Gen2), N (length of what follows the next opcode byte), 22, 10
//     (option: metadata flags present), 00 1B (sub-command search flags),
//     03 E8 (1000 ms read cycle), MM MM (metadata flags). Stop: 0x2F with
//     00 00 02.
//   - A streamed tag frame is opcode 0x22, status 0, and DATA: option (0x10
//     bit set when metadata follows), search flags (2), metadata flags (2),
//     tag count (1), then per tag: the metadata fields selected by the flags
//     in flag order, then EPC length in bits (2, counting PC word + EPC +
//     EPC CRC), PC word (2), EPC, EPC CRC (2).
//   - Metadata flags and field widths: 0x0001 read count (1), 0x0002 RSSI
//     (1, signed dBm), 0x0004 antenna (1: TX port in the high nibble, RX
//     port in the low nibble), 0x0008 frequency (3, kHz), 0x0010 timestamp
//     (4, ms), 0x0020 phase (2, degrees 0–180), 0x0040 protocol (1), 0x0080
//     embedded data (2-byte bit count, then the bytes), 0x0100 GPIO (1).
//
// Less sure (verify against the Mercury API / module documentation):
//   - Widths of 0x0200 (Gen2 Q), 0x0400 (Gen2 link frequency) and 0x0800
//     (Gen2 target), taken here as one byte each; flags above 0x0800 are
//     rejected as malformed. The driver never requests them.
//   - That the tag count is one byte and every streamed frame carries it.
//   - The module's keep-alive/"no tags found" frames during continuous
//     reading (opcode 0x22, status 0x0400, no data) and their rate (about
//     one per read cycle); the driver only needs "some CRC-valid frame".
//   - The version response layout (bootloader 4, hardware 4, firmware date
//     4, firmware version 4, supported protocols 4): only logged.
//   - Which nibble of the antenna byte names "the" antenna on a bistatic
//     reader: TagRead.Antenna is the TX port (high nibble), or the low
//     nibble when the high one is zero.
//   - The M6e Nano's read power ceiling (27.00 dBm); Config accepts up to
//     31.50 dBm for larger modules and lets the module refuse.
//
// Not implemented: booting the application firmware from the bootloader
// (opcode 0x04), changing the module's baud rate (0x06), antenna search
// lists for multi-port readers, tag writes and locks, and any protocol other
// than Gen2.

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Mercury opcodes the driver uses.
const (
	OpVersion          byte = 0x03
	OpReadTagMultiple  byte = 0x22
	OpMultiProtocolOp  byte = 0x2F
	OpSetAntennaPort   byte = 0x91
	OpSetReadTxPower   byte = 0x92
	OpSetTagProtocol   byte = 0x93
	OpSetRegion        byte = 0x97
	OpSetReaderConfig  byte = 0x9A
	mercuryHeader      byte = 0xFF
	protocolGen2       byte = 0x05
	statusNoTagsFound       = 0x0400
	maxMercuryFrameLen      = 255 + 7
)

// Metadata flags of a streamed tag read.
const (
	MetaReadCount uint16 = 0x0001
	MetaRSSI      uint16 = 0x0002
	MetaAntenna   uint16 = 0x0004
	MetaFrequency uint16 = 0x0008
	MetaTimestamp uint16 = 0x0010
	MetaPhase     uint16 = 0x0020
	MetaProtocol  uint16 = 0x0040
	MetaData      uint16 = 0x0080
	MetaGPIO      uint16 = 0x0100
	MetaGen2Q     uint16 = 0x0200
	MetaGen2LF    uint16 = 0x0400
	MetaGen2Tgt   uint16 = 0x0800
	// DefaultMetadata is what the driver asks for.
	DefaultMetadata = MetaReadCount | MetaRSSI | MetaAntenna | MetaFrequency | MetaTimestamp | MetaPhase | MetaProtocol
	knownMetadata   = 0x0FFF
)

// Regions maps the config names of Mercury regions to their codes.
var Regions = map[string]byte{
	"IN": 0x04, "JP": 0x05, "PRC": 0x06, "EU": 0x08, "KR": 0x09,
	"AU": 0x0B, "NZ": 0x0C, "NA": 0x0D, "OPEN": 0xFF,
}

// MercuryCRC computes the Mercury frame CRC over b (a frame without its
// 0xFF header and without the CRC itself). It is safe for concurrent use.
func MercuryCRC(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc = crc<<4 | uint16(c>>4) ^ crcNibble[crc>>12]
		crc = crc<<4 | uint16(c&0x0F) ^ crcNibble[crc>>12]
	}
	return crc
}

// crcNibble[i] is i·x^16 mod (x^16+x^12+x^5+1): what shifting the top
// nibble i out of the register folds back in.
var crcNibble = func() (t [16]uint16) {
	for i := range t {
		var r uint16
		for bit := 3; bit >= 0; bit-- {
			top := r & 0x8000
			r <<= 1
			if top != 0 {
				r ^= 0x1021
			}
			if i>>bit&1 != 0 {
				r ^= 0x1021
			}
		}
		t[i] = r
	}
	return t
}()

// EncodeCommand builds a host→module frame. data may be at most 255 bytes.
func EncodeCommand(op byte, data []byte) ([]byte, error) {
	if len(data) > 255 {
		return nil, fmt.Errorf("encoding mercury command 0x%02X: %d data bytes, max 255", op, len(data))
	}
	f := make([]byte, 0, len(data)+5)
	f = append(f, mercuryHeader, byte(len(data)), op)
	f = append(f, data...)
	return binary.BigEndian.AppendUint16(f, MercuryCRC(f[1:])), nil
}

// MercuryFrame is one CRC-valid frame. For module→host frames Status is
// the status word; host→module frames have none (Status 0). Data and Raw
// are owned by the receiver.
type MercuryFrame struct {
	Opcode byte
	Status uint16
	Data   []byte
	Raw    []byte // the whole frame, header to CRC
}

// Splitter cuts a byte stream into CRC-valid Mercury frames, resyncing on
// the next 0xFF after garbage or a CRC failure (so a corrupt frame costs
// only itself, not the frames after it). It is a pure state machine, holds
// at most one maximal frame plus the last input, and is not safe for
// concurrent use.
type Splitter struct {
	status bool // frames carry a status word (module→host)
	buf    []byte
	synced bool
	// CRCErrors counts frames rejected for a bad CRC. While resyncing after
	// one failure, further failures are not counted again.
	CRCErrors uint64
	// JunkBytes counts bytes discarded outside any valid frame.
	JunkBytes uint64
}

// NewSplitter returns a Splitter for module→host frames (withStatus true)
// or host→module frames (false).
func NewSplitter(withStatus bool) *Splitter {
	return &Splitter{status: withStatus, synced: true}
}

// Feed consumes p and calls emit for each CRC-valid frame, in order.
// Feed does not retain p.
func (s *Splitter) Feed(p []byte, emit func(MercuryFrame)) {
	s.buf = append(s.buf, p...)
	over := 5
	if s.status {
		over = 7
	}
	start := 0
	defer func() {
		n := copy(s.buf, s.buf[start:])
		s.buf = s.buf[:n]
	}()
	for {
		rest := s.buf[start:]
		i := 0
		for i < len(rest) && rest[i] != mercuryHeader {
			i++
		}
		if i > 0 {
			s.JunkBytes += uint64(i)
			start += i
			rest = rest[i:]
		}
		if len(rest) < 2 {
			return
		}
		total := int(rest[1]) + over
		if len(rest) < total {
			return
		}
		fr := rest[:total]
		if binary.BigEndian.Uint16(fr[total-2:]) != MercuryCRC(fr[1:total-2]) {
			if s.synced {
				s.CRCErrors++
				s.synced = false
			}
			s.JunkBytes++
			start++
			continue
		}
		s.synced = true
		raw := append([]byte(nil), fr...)
		mf := MercuryFrame{Opcode: raw[2], Raw: raw}
		if s.status {
			mf.Status = binary.BigEndian.Uint16(raw[3:5])
			mf.Data = raw[5 : total-2]
		} else {
			mf.Data = raw[3 : total-2]
		}
		start += total
		emit(mf)
	}
}

// Buffered reports how many bytes are held waiting for the rest of a frame.
func (s *Splitter) Buffered() int { return len(s.buf) }

// Reset discards any partial frame.
func (s *Splitter) Reset() { s.buf = s.buf[:0]; s.synced = true }

// ErrMalformed marks a CRC-valid frame whose contents do not follow the
// layout the driver knows (truncated tag record, unknown metadata flag, …).
var ErrMalformed = errors.New("malformed mercury frame")

// TagObservation is one tag in a streamed read frame.
type TagObservation struct {
	EPC       []byte
	PC        uint16
	ReadCount int
	RSSI      int // dBm
	HasRSSI   bool
	Antenna   int
	FreqKHz   int
	Timestamp uint32 // ms
	Phase     int    // degrees
	Protocol  byte
}

// IsTagFrame reports whether f is a streamed tag-read frame (as opposed to
// a keep-alive, a statistics frame or a command response).
func IsTagFrame(f MercuryFrame) bool {
	return f.Opcode == OpReadTagMultiple && f.Status == 0 && len(f.Data) > 0 && f.Data[0]&0x10 != 0
}

// ParseTagFrame decodes the tags of a frame for which IsTagFrame holds.
// Errors wrap ErrMalformed and name the offset. The EPC slices alias
// f.Raw.
func ParseTagFrame(f MercuryFrame) ([]TagObservation, error) {
	d := f.Data
	bad := func(off int, what string) error {
		return fmt.Errorf("%w: opcode 0x%02X, data offset %d: %s", ErrMalformed, f.Opcode, off, what)
	}
	if len(d) < 6 {
		return nil, bad(len(d), "tag frame shorter than its 6-byte preamble")
	}
	flags := binary.BigEndian.Uint16(d[3:5])
	if flags&^knownMetadata != 0 {
		return nil, bad(3, fmt.Sprintf("unknown metadata flags 0x%04X", flags&^knownMetadata))
	}
	count := int(d[5])
	if count == 0 {
		return nil, bad(5, "tag count 0")
	}
	off := 6
	need := func(n int, what string) error {
		if len(d)-off < n {
			return bad(off, fmt.Sprintf("%s needs %d bytes, %d left", what, n, len(d)-off))
		}
		return nil
	}
	tags := make([]TagObservation, 0, count)
	for range count {
		var t TagObservation
		fields := []struct {
			flag  uint16
			width int
			name  string
			set   func(b []byte)
		}{
			{MetaReadCount, 1, "read count", func(b []byte) { t.ReadCount = int(b[0]) }},
			{MetaRSSI, 1, "rssi", func(b []byte) { t.RSSI, t.HasRSSI = int(int8(b[0])), true }},
			{MetaAntenna, 1, "antenna", func(b []byte) {
				t.Antenna = int(b[0] >> 4)
				if t.Antenna == 0 {
					t.Antenna = int(b[0] & 0x0F)
				}
			}},
			{MetaFrequency, 3, "frequency", func(b []byte) { t.FreqKHz = int(b[0])<<16 | int(b[1])<<8 | int(b[2]) }},
			{MetaTimestamp, 4, "timestamp", func(b []byte) { t.Timestamp = binary.BigEndian.Uint32(b) }},
			{MetaPhase, 2, "phase", func(b []byte) { t.Phase = int(binary.BigEndian.Uint16(b)) }},
			{MetaProtocol, 1, "protocol", func(b []byte) { t.Protocol = b[0] }},
		}
		for _, fl := range fields {
			if flags&fl.flag == 0 {
				continue
			}
			if err := need(fl.width, fl.name); err != nil {
				return nil, err
			}
			fl.set(d[off : off+fl.width])
			off += fl.width
		}
		if flags&MetaData != 0 {
			if err := need(2, "embedded data length"); err != nil {
				return nil, err
			}
			bits := int(binary.BigEndian.Uint16(d[off:]))
			off += 2
			n := (bits + 7) / 8
			if err := need(n, "embedded data"); err != nil {
				return nil, err
			}
			off += n
		}
		for _, fl := range []uint16{MetaGPIO, MetaGen2Q, MetaGen2LF, MetaGen2Tgt} {
			if flags&fl != 0 {
				if err := need(1, fmt.Sprintf("metadata 0x%04X", fl)); err != nil {
					return nil, err
				}
				off++
			}
		}
		if err := need(2, "EPC length"); err != nil {
			return nil, err
		}
		bits := int(binary.BigEndian.Uint16(d[off:]))
		if bits%8 != 0 || bits < 6*8 {
			return nil, bad(off, fmt.Sprintf("EPC length %d bits: want a whole number of bytes covering PC, EPC and CRC", bits))
		}
		off += 2
		n := bits / 8
		if err := need(n, "PC+EPC+CRC"); err != nil {
			return nil, err
		}
		t.PC = binary.BigEndian.Uint16(d[off:])
		t.EPC = d[off+2 : off+n-2 : off+n-2]
		off += n
		tags = append(tags, t)
	}
	if off != len(d) {
		return nil, bad(off, fmt.Sprintf("%d bytes after the last tag record", len(d)-off))
	}
	return tags, nil
}

// startReadingData is the 0x2F payload that starts continuous Gen2
// reading with the given metadata flags.
func startReadingData(meta uint16) []byte {
	return []byte{
		0x00, 0x00, // timeout: none (continuous)
		0x01,              // option: start continuous reading
		OpReadTagMultiple, // embedded sub-opcode
		0x00, 0x00,        // search flags
		protocolGen2,      // tag protocol
		0x07,              // length of what follows the next byte
		OpReadTagMultiple, // the embedded command
		0x10,              // option: metadata flags present
		0x00, 0x1B,        // sub-command search flags (as logged by ThingMagic's tools)
		0x03, 0xE8, // read cycle 1000 ms
		byte(meta >> 8), byte(meta), // metadata flags
	}
}

// stopReadingData is the 0x2F payload that stops continuous reading.
var stopReadingData = []byte{0x00, 0x00, 0x02}
