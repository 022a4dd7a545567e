package uplink

import (
	"fmt"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// EmbeddedBroker is an in-process MQTT broker for the demo station, so a
// newcomer sees the whole path without installing one. It listens on
// loopback only, allows anonymous clients, and keeps nothing on disk. It is
// not for production: a station's events belong on a broker off the box.
type EmbeddedBroker struct {
	srv *mqtt.Server
	url string
}

// StartEmbeddedBroker starts a broker on addr (e.g. "127.0.0.1:0" for a free
// port) and returns once it accepts connections.
func StartEmbeddedBroker(addr string, log *slog.Logger) (*EmbeddedBroker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := mqtt.New(&mqtt.Options{Logger: log})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "demo", Address: addr})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("embedded broker: listening on %s: %w", addr, err)
	}
	if err := srv.Serve(); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	return &EmbeddedBroker{srv: srv, url: "tcp://" + tcp.Address()}, nil
}

// URL is the broker's address, tcp://127.0.0.1:PORT.
func (b *EmbeddedBroker) URL() string { return b.url }

// Close stops the broker and disconnects its clients.
func (b *EmbeddedBroker) Close() error { return b.srv.Close() }
