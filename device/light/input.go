package light

import (
	"context"
	"fmt"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// edgePoll bounds each WaitForEdge so a watcher notices the end of its
// context without relying on driver-specific Halt behaviour.
const edgePoll = 200 * time.Millisecond

// DefaultDebounce is used by WatchButton and WatchSwitch for debounce <= 0.
const DefaultDebounce = 30 * time.Millisecond

// WatchButton watches a push button wired between pin and ground: the pin
// is configured with its pull-up and edge detection on both edges, so
// pressed is Low. onPress is called once per debounced press (a change to
// Low that holds for debounce with no further edge); bounces within the
// debounce window count as one change, and a glitch that returns to High
// inside the window is no press. onPress runs on the watcher's goroutine.
// WatchButton returns nil when ctx ends, or an error if the pin cannot be
// configured.
func WatchButton(ctx context.Context, pin gpio.PinIn, debounce time.Duration, onPress func()) error {
	return watch(ctx, pin, debounce, false, func(l gpio.Level) {
		if l == gpio.Low {
			onPress()
		}
	})
}

// WatchSwitch watches a two-position switch (e.g. a door contact) wired
// between pin and ground, with the pin's pull-up enabled (closed is Low).
// onChange is called first with the level read at start, then once per
// debounced change: the level must hold for debounce with no further edge.
// onChange runs on the watcher's goroutine, never concurrently with itself.
// WatchSwitch returns nil when ctx ends, or an error if the pin cannot be
// configured.
func WatchSwitch(ctx context.Context, pin gpio.PinIn, debounce time.Duration, onChange func(gpio.Level)) error {
	return watch(ctx, pin, debounce, true, onChange)
}

// watch reports debounced level changes of pin to fn; with initial it also
// reports the starting level.
func watch(ctx context.Context, pin gpio.PinIn, debounce time.Duration, initial bool, fn func(gpio.Level)) error {
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	if err := pin.In(gpio.PullUp, gpio.BothEdges); err != nil {
		return fmt.Errorf("light: configuring input %s with pull-up and edge detection: %w", pin, err)
	}
	stable := pin.Read()
	if initial {
		fn(stable)
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		if !pin.WaitForEdge(edgePoll) {
			continue
		}
		// Settle: wait until no edge arrives for a whole debounce window.
		for pin.WaitForEdge(debounce) {
			if ctx.Err() != nil {
				return nil
			}
		}
		if l := pin.Read(); l != stable {
			stable = l
			fn(l)
		}
	}
}
