//go:build linux

package testkit

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// This file emulates a ThingMagic/JADAK M6e Nano speaking the Mercury
// serial protocol on the master side of a PTY. It is written independently
// of the driver in device/rfid (its own CRC and framing), so the two check
// each other. Protocol facts are listed in device/rfid/mercury.go.

// MercuryTag is one tag the emulated module reports.
type MercuryTag struct {
	EPC     string // hex, e.g. "3074257BF7194E4000001A85"
	RSSI    int    // dBm, -128 … 127
	Antenna int    // 1 … 15 (reported as TX and RX port)
	Phase   int    // degrees 0 … 180
}

// MercuryConfig sets up the emulated module.
type MercuryConfig struct {
	// Tags are reported over and over, one frame per tag, while the driver
	// has continuous reading on (and the emulator is not stalled).
	Tags []MercuryTag
	// Interval is the pause between streamed tag frames (0: back to back,
	// limited only by LineRate).
	Interval time.Duration
	// KeepAlive is the period of "no tags found" frames sent while reading
	// and nothing else is sent; default 100ms.
	KeepAlive time.Duration
	// LineRate paces every byte the module sends, in bytes per second, to
	// emulate a UART (baud/10 for 8N1). 0: unpaced. A PTY ignores baud.
	LineRate int
	// MaxReadPower is the highest read power (centi-dBm) the module accepts;
	// default 2700 as on the M6e Nano.
	MaxReadPower int
}

// Mercury is the emulated module. Its methods are safe for concurrent use;
// NewMercury, Unplug and Plug must be called from the test goroutine.
type Mercury struct {
	t   testing.TB
	p   *PTY
	cfg MercuryConfig

	writeMu sync.Mutex // one UART: whole frames, paced
	paceAt  time.Time  // when the line is free again

	mu       sync.Mutex
	reading  bool
	stalled  bool
	meta     uint16
	region   byte
	power    int
	commands []byte
	queue    []queued // frames to send before the next streamed tag
	tagIdx   int
	sentTags uint64
	badCmds  int
	wake     chan struct{} // poked when state changes

	sess *mercurySession
}

type queued struct {
	b   []byte
	tag bool // counts in TagFramesSent
}

type mercurySession struct {
	done chan struct{}
	wg   sync.WaitGroup
}

// NewMercury starts an emulated module on p (which must be plugged). It is
// stopped (and p unplugged) when the test ends.
func NewMercury(t testing.TB, p *PTY, cfg MercuryConfig) *Mercury {
	t.Helper()
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = 100 * time.Millisecond
	}
	if cfg.MaxReadPower == 0 {
		cfg.MaxReadPower = 2700
	}
	for _, tg := range cfg.Tags {
		if _, err := hex.DecodeString(tg.EPC); err != nil {
			t.Fatalf("testkit: mercury tag EPC %q: %v", tg.EPC, err)
		}
	}
	m := &Mercury{t: t, p: p, cfg: cfg, wake: make(chan struct{}, 1)}
	t.Cleanup(m.Unplug)
	m.start()
	return m
}

// Unplug unplugs the PTY and powers the module off: reading stops and
// queued frames are dropped. The emulator's goroutines are joined.
func (m *Mercury) Unplug() {
	m.p.Unplug()
	m.mu.Lock()
	s := m.sess
	m.sess = nil
	m.reading = false
	m.queue = nil
	m.mu.Unlock()
	if s != nil {
		close(s.done)
		s.wg.Wait()
	}
}

// Plug plugs the PTY back in and powers the module up (idle, not reading).
func (m *Mercury) Plug() {
	m.p.Plug()
	m.start()
}

func (m *Mercury) start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sess != nil {
		return
	}
	s := &mercurySession{done: make(chan struct{})}
	m.sess = s
	s.wg.Add(2)
	go m.serveCommands(s)
	go m.stream(s)
}

// Stall makes the module go silent: it sends nothing and ignores commands
// (it still drains what the driver writes) until Resume.
func (m *Mercury) Stall() { m.set(func() { m.stalled = true }) }

// Resume ends a Stall. The module keeps the state it had (e.g. reading).
func (m *Mercury) Resume() { m.set(func() { m.stalled = false }) }

// SetTags replaces the streamed tag population.
func (m *Mercury) SetTags(tags []MercuryTag) {
	m.set(func() { m.cfg.Tags = append([]MercuryTag(nil), tags...); m.tagIdx = 0 })
}

// Emit queues one tag frame per tag, in order, sent while reading (before
// the streamed population continues).
func (m *Mercury) Emit(tags ...MercuryTag) {
	m.set(func() {
		for _, tg := range tags {
			m.queue = append(m.queue, queued{m.tagFrame(tg), true})
		}
	})
}

// InjectCRCError queues a tag frame for tag whose CRC is wrong.
func (m *Mercury) InjectCRCError(tag MercuryTag) {
	m.set(func() {
		f := m.tagFrame(tag)
		f[len(f)-1] ^= 0x5A
		m.queue = append(m.queue, queued{b: f})
	})
}

// InjectMalformed queues a frame with a valid CRC whose tag record is cut
// short (the EPC length claims more bytes than the frame has), preceded by
// a few bytes of line noise that are not part of any frame.
func (m *Mercury) InjectMalformed(tag MercuryTag) {
	m.set(func() {
		good := m.tagFrame(tag)
		body := append([]byte(nil), good[1:len(good)-2-4]...) // drop 4 bytes of the EPC block
		body[0] = byte(len(body) - 4)                         // LEN excludes LEN, opcode and status
		f := append([]byte{0x00, 0x13, 0x37, mercuryHeaderByte}, body...)
		f = binary.BigEndian.AppendUint16(f, emuCRC(body))
		m.queue = append(m.queue, queued{b: f})
	})
}

// InjectRaw queues arbitrary bytes.
func (m *Mercury) InjectRaw(b []byte) {
	m.set(func() { m.queue = append(m.queue, queued{b: append([]byte(nil), b...)}) })
}

// Reading reports whether continuous reading is on.
func (m *Mercury) Reading() bool { m.mu.Lock(); defer m.mu.Unlock(); return m.reading }

// Region returns the last region code set (0 if none).
func (m *Mercury) Region() byte { m.mu.Lock(); defer m.mu.Unlock(); return m.region }

// ReadPower returns the last read power set, in centi-dBm.
func (m *Mercury) ReadPower() int { m.mu.Lock(); defer m.mu.Unlock(); return m.power }

// Commands returns the opcodes received so far, in order.
func (m *Mercury) Commands() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.commands...)
}

// BadCommands counts host frames with a bad CRC.
func (m *Mercury) BadCommands() int { m.mu.Lock(); defer m.mu.Unlock(); return m.badCmds }

// TagFramesSent counts streamed and emitted tag frames written so far.
func (m *Mercury) TagFramesSent() uint64 { m.mu.Lock(); defer m.mu.Unlock(); return m.sentTags }

// QueueLen returns how many queued frames are not yet sent.
func (m *Mercury) QueueLen() int { m.mu.Lock(); defer m.mu.Unlock(); return len(m.queue) }

func (m *Mercury) set(f func()) {
	m.mu.Lock()
	f()
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

const mercuryHeaderByte = 0xFF

// emuCRC is the Mercury CRC, bit by bit: each data bit enters the low end
// of the register; a 1 shifted out of the top folds in 0x1021.
func emuCRC(b []byte) uint16 {
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

// response builds a module→host frame.
func response(op byte, status uint16, data []byte) []byte {
	f := []byte{mercuryHeaderByte, byte(len(data)), op, byte(status >> 8), byte(status)}
	f = append(f, data...)
	return binary.BigEndian.AppendUint16(f, emuCRC(f[1:]))
}

// tagFrame encodes one streamed tag read with the metadata the driver
// asked for. Callers hold m.mu.
func (m *Mercury) tagFrame(tg MercuryTag) []byte {
	epc, _ := hex.DecodeString(tg.EPC)
	meta := m.meta
	if meta == 0 {
		meta = 0x007F
	}
	d := []byte{0x10, 0x00, 0x1B, byte(meta >> 8), byte(meta), 0x01}
	if meta&0x0001 != 0 {
		d = append(d, 1)
	}
	if meta&0x0002 != 0 {
		d = append(d, byte(int8(tg.RSSI)))
	}
	if meta&0x0004 != 0 {
		d = append(d, byte(tg.Antenna<<4|tg.Antenna&0x0F))
	}
	if meta&0x0008 != 0 {
		d = append(d, 0x0D, 0xF1, 0x28) // 913 704 kHz
	}
	if meta&0x0010 != 0 {
		d = append(d, 0, 0, 0x01, 0x27)
	}
	if meta&0x0020 != 0 {
		d = binary.BigEndian.AppendUint16(d, uint16(tg.Phase))
	}
	if meta&0x0040 != 0 {
		d = append(d, 0x05)
	}
	if meta&0x0080 != 0 {
		d = append(d, 0, 0)
	}
	for _, f := range []uint16{0x0100, 0x0200, 0x0400, 0x0800} {
		if meta&f != 0 {
			d = append(d, 0)
		}
	}
	pc := uint16(len(epc)/2) << 11
	block := binary.BigEndian.AppendUint16(nil, pc)
	block = append(block, epc...)
	block = binary.BigEndian.AppendUint16(block, ^emuCRC(block)) // Gen2 EPC CRC stand-in
	d = binary.BigEndian.AppendUint16(d, uint16(len(block)*8))
	d = append(d, block...)
	return response(0x22, 0, d)
}

// write sends b as one paced unit on the line.
func (m *Mercury) write(b []byte) error {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	if r := m.cfg.LineRate; r > 0 {
		// Keep an absolute schedule so oversleeping is made up by the next
		// frames, but do not bank more than a little idle line time.
		if now := time.Now(); now.Sub(m.paceAt) > 20*time.Millisecond {
			m.paceAt = now
		}
		m.paceAt = m.paceAt.Add(time.Duration(len(b)) * time.Second / time.Duration(r))
		if d := time.Until(m.paceAt); d > 0 {
			time.Sleep(d) // emulating the wire's speed, not synchronising
		}
	}
	return m.p.Write(b)
}

// serveCommands parses host frames and answers them.
func (m *Mercury) serveCommands(s *mercurySession) {
	defer s.wg.Done()
	buf := make([]byte, 1024)
	var pend []byte
	for {
		n, err := m.p.Read(buf)
		if err != nil {
			return // unplugged
		}
		pend = append(pend, buf[:n]...)
		for {
			i := 0
			for i < len(pend) && pend[i] != mercuryHeaderByte {
				i++
			}
			pend = pend[i:]
			if len(pend) < 2 || len(pend) < int(pend[1])+5 {
				break
			}
			total := int(pend[1]) + 5
			fr := pend[:total]
			if binary.BigEndian.Uint16(fr[total-2:]) != emuCRC(fr[1:total-2]) {
				m.mu.Lock()
				m.badCmds++
				m.mu.Unlock()
				pend = pend[1:]
				continue
			}
			op, data := fr[2], append([]byte(nil), fr[3:total-2]...)
			pend = pend[total:]
			if resp := m.handle(op, data); resp != nil {
				if err := m.write(resp); err != nil {
					return
				}
			}
		}
	}
}

// handle applies one command and returns the response (nil: none).
func (m *Mercury) handle(op byte, data []byte) []byte {
	m.mu.Lock()
	defer func() {
		m.mu.Unlock()
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}()
	if m.stalled {
		return nil
	}
	m.commands = append(m.commands, op)
	const (
		ok           = 0x0000
		wrongLen     = 0x0100 // wrong number of data bytes
		badOpcode    = 0x0101 // invalid opcode
		powerTooHigh = 0x0103
		badParam     = 0x0105
	)
	want := func(n int) bool { return len(data) == n }
	switch op {
	case 0x03: // version: bootloader, hardware, fw date, fw version, protocols
		v := []byte{0x12, 0x12, 0x06, 0x00, 0x18, 0x00, 0x00, 0x03, 0x20, 0x19, 0x07, 0x04, 0x01, 0x09, 0x00, 0x02, 0x00, 0x00, 0x00, 0x10}
		return response(op, ok, v)
	case 0x93:
		if !want(2) {
			return response(op, wrongLen, nil)
		}
		if data[1] != 0x05 {
			return response(op, badParam, nil)
		}
		return response(op, ok, nil)
	case 0x91:
		if len(data) < 2 {
			return response(op, wrongLen, nil)
		}
		return response(op, ok, nil)
	case 0x97:
		if !want(1) {
			return response(op, wrongLen, nil)
		}
		switch data[0] {
		case 0x04, 0x05, 0x06, 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0xFF:
			m.region = data[0]
			return response(op, ok, nil)
		}
		return response(op, badParam, nil)
	case 0x92:
		if !want(2) {
			return response(op, wrongLen, nil)
		}
		p := int(binary.BigEndian.Uint16(data))
		if p > m.cfg.MaxReadPower {
			return response(op, powerTooHigh, nil)
		}
		m.power = p
		return response(op, ok, nil)
	case 0x9A:
		if !want(3) {
			return response(op, wrongLen, nil)
		}
		return response(op, ok, nil)
	case 0x2F:
		if len(data) < 3 {
			return response(op, wrongLen, nil)
		}
		switch data[2] {
		case 0x01: // start continuous reading
			if len(data) < 16 || data[3] != 0x22 || data[6] != 0x05 {
				return response(op, badParam, nil)
			}
			m.meta = binary.BigEndian.Uint16(data[14:16])
			if m.meta&^0x0FFF != 0 {
				return response(op, badParam, nil)
			}
			m.reading = true
			m.tagIdx = 0
			return response(op, ok, nil)
		case 0x02: // stop
			m.reading = false
			m.queue = nil
			return response(op, ok, nil)
		}
		return response(op, badParam, nil)
	}
	return response(op, badOpcode, nil)
}

// stream sends queued frames, streamed tags and keep-alives while reading.
func (m *Mercury) stream(s *mercurySession) {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	lastSent := time.Now()
	for {
		var next []byte
		var isTag bool
		wait := time.Duration(-1) // block until woken
		m.mu.Lock()
		switch {
		case m.stalled || !m.reading:
		case len(m.queue) > 0:
			next, isTag = m.queue[0].b, m.queue[0].tag
			m.queue = m.queue[1:]
		case len(m.cfg.Tags) > 0:
			if d := m.cfg.Interval - time.Since(lastSent); d > 0 {
				wait = d
				break
			}
			next = m.tagFrame(m.cfg.Tags[m.tagIdx%len(m.cfg.Tags)])
			m.tagIdx++
			isTag = true
		default:
			if d := m.cfg.KeepAlive - time.Since(lastSent); d > 0 {
				wait = d
				break
			}
			next = response(0x22, 0x0400, nil)
		}
		m.mu.Unlock()
		if next != nil {
			if err := m.write(next); err != nil {
				if !errors.Is(err, ErrUnplugged) {
					m.t.Logf("testkit: mercury emulator write: %v", err)
				}
				<-s.done
				return
			}
			lastSent = time.Now()
			if isTag {
				m.mu.Lock()
				m.sentTags++
				m.mu.Unlock()
			}
			select {
			case <-s.done:
				return
			default:
			}
			continue
		}
		var tc <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			tc = timer.C
		}
		select {
		case <-s.done:
			return
		case <-m.wake:
		case <-tc:
		}
	}
}

// String describes the emulator state for test failure messages.
func (m *Mercury) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Sprintf("mercury{reading=%v stalled=%v region=0x%02X power=%d cmds=% X queued=%d sent=%d}",
		m.reading, m.stalled, m.region, m.power, m.commands, len(m.queue), m.sentTags)
}
