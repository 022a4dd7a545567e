// Package light drives the dock's stack light: green, amber and red lamps
// and a buzzer on GPIO relays, through periph.io gpio.PinOut pins. It also
// watches GPIO inputs (an acknowledge button, a door switch) with debouncing.
//
// # What shows
//
// Two layers decide the outputs:
//
//   - The base layer is the highest-priority standing condition, or idle:
//     storage fault > buffer full > reader down (the faults) > buffer high >
//     broker offline (background) > idle (all off).
//   - A decision (accept, warn, reject) is an overlay: it shows for
//     Options.DecisionHold from the moment ShowDecision is called, then the
//     base layer resumes, its pattern restarting from the on-phase. A newer
//     decision replaces the one showing and restarts the hold.
//
// The lamp test (StackLight.Test) overrides both for its few seconds.
//
// The issue orders the light as fault > reject > warn > accept > idle. This
// package keeps that order for what the station shows over time, with one
// deliberate exception: a decision shows for its hold even while a fault is
// active. The operator at the door must see the answer to the scan just
// made (for example a rejected pallet while the other reader is down);
// hiding it behind the fault would let a rejected item through. The fault
// cannot be missed: it is back after at most DecisionHold and stays until
// it clears, and a decision never changes the base layer. Among decisions,
// newest wins rather than most severe, because each answer belongs to the
// scan just made; the beeps (warn 1, reject 3) restart with each decision.
//
// # Patterns
//
// A Pattern gives each output a Signal: off, steady, blink (on/off times,
// repeating) or a number of pulses. Time runs from when the pattern starts
// showing. Each output moves through its phases one at a time and every
// phase lasts its full length: if Run was stalled (a loaded machine), the
// rest of the pattern shifts later rather than a beep or flash being
// skipped. The defaults (see DefaultPatterns) are: accept green steady;
// warn amber steady + 1 beep; reject red steady + 3 beeps; reader down
// amber 1 Hz blink; broker offline amber 0.5 Hz short flash; buffer high
// amber slow even blink; buffer full amber + red steady with a buzzer chirp
// every 5 s; storage fault red 4 Hz blink; idle all off. Options.Patterns
// overrides any of them.
//
// Silence acknowledges the pattern showing: its buzzer stops until the
// decision ends or the condition clears.
//
// # Pins
//
// Run is the only goroutine that writes the pins. It writes a pin only when
// its level changes, starts with every output off, and leaves every output
// at its safe, off level when it returns. With Options.ActiveLow (or
// Pins.ActiveLow, from PinNames.ActiveLow) every level is inverted: off,
// and so idle and stopped, is High.
//
// OpenGPIO finds pins by name in periph's gpioreg after host.Init;
// VirtualPins gives in-memory pins that log changes, for machines without
// GPIO.
package light
