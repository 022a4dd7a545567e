package uplink

import (
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Message is one extra publish derived from a Record (Config.Extra): QoS 1,
// not retained, on Topic.
type Message struct {
	Topic   string
	Payload []byte
}

// publishRecord publishes r on the events topic and, when Config.Extra is
// set, every message Extra derives from it, in that order. The returned
// token completes when all of them have completed, with the first error;
// the record counts as acknowledged only when every publish was, so the
// Outbox keeps it (and everything derived from it is resent) until then.
func (c *Client) publishRecord(cli mqtt.Client, r Record) mqtt.Token {
	tok := cli.Publish(c.cfg.EventsTopic, 1, false, r.Payload)
	if c.cfg.Extra == nil {
		return tok
	}
	extra := c.cfg.Extra(r)
	if len(extra) == 0 {
		return tok
	}
	toks := []mqtt.Token{tok}
	for _, m := range extra {
		toks = append(toks, cli.Publish(m.Topic, 1, false, m.Payload))
	}
	return joinTokens(toks)
}

// allTokens completes when every token in toks has completed.
type allTokens struct {
	toks []mqtt.Token
	done chan struct{}
}

// joinTokens returns a token over toks. Its goroutine ends when the last
// token completes; paho completes every outstanding token (with an error)
// when a connection ends, so it never outlives its connection.
func joinTokens(toks []mqtt.Token) mqtt.Token {
	t := &allTokens{toks: toks, done: make(chan struct{})}
	go func() {
		for _, k := range toks {
			<-k.Done()
		}
		close(t.done)
	}()
	return t
}

func (t *allTokens) Wait() bool { <-t.done; return true }

func (t *allTokens) WaitTimeout(d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-t.done:
		return true
	case <-tm.C:
		return false
	}
}

func (t *allTokens) Done() <-chan struct{} { return t.done }

// Error is the first error of the joined publishes, in publish order.
func (t *allTokens) Error() error {
	for _, k := range t.toks {
		if err := k.Error(); err != nil {
			return err
		}
	}
	return nil
}
