package collector

// Range is an inclusive range of sequence numbers, Lo ≤ Hi.
type Range struct{ Lo, Hi uint64 }

// Progress is one station's receipt bookkeeping: every seq ≤ Upto is
// stored (or was declared skipped by the station), Max is the highest seq
// stored or declared, and Holes are the ranges in (Upto, Max] still
// missing, sorted and disjoint. The zero value is a station never heard
// from. It is a plain value owned by whoever holds the station's row lock.
type Progress struct {
	Upto, Max uint64
	Holes     []Range
}

// Fill records that seqs lo..hi are stored or declared skipped, opening a
// hole for anything between the old Max and lo, closing what they cover,
// and moving Upto to just below the first remaining hole (or to Max when
// none is left). It reports whether anything changed. lo > hi is a no-op.
func (p *Progress) Fill(lo, hi uint64) bool {
	if lo > hi || hi <= p.Upto {
		return false
	}
	if lo <= p.Upto {
		lo = p.Upto + 1
	}
	changed := false
	if lo > p.Max+1 {
		p.Holes = append(p.Holes, Range{p.Max + 1, lo - 1})
		changed = true
	}
	// Subtract [lo, hi] from the holes.
	out := p.Holes[:0:0]
	for _, h := range p.Holes {
		if h.Hi < lo || h.Lo > hi {
			out = append(out, h)
			continue
		}
		changed = true
		if h.Lo < lo {
			out = append(out, Range{h.Lo, lo - 1})
		}
		if h.Hi > hi {
			out = append(out, Range{hi + 1, h.Hi})
		}
	}
	p.Holes = out
	if hi > p.Max {
		p.Max = hi
		changed = true
	}
	upto := p.Max
	if len(p.Holes) > 0 {
		upto = p.Holes[0].Lo - 1
	}
	if upto != p.Upto {
		p.Upto = upto
		changed = true
	}
	return changed
}
