package main

// Inbound hardening wiring: what central (or anyone who can publish on the
// station's topics) may make the station hold, and which secret files it
// will use. The logic lives in internal/secretfile, internal/allowlist
// (limits, staging) and internal/command (size, retained, expiry); this
// file turns the config into their options.

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/dockd/dockd/internal/allowlist"
	"github.com/dockd/dockd/internal/command"
	"github.com/dockd/dockd/internal/config"
	"github.com/dockd/dockd/internal/secretfile"
	"github.com/dockd/dockd/uplink"
)

// secretFile is one configured file that holds a secret.
type secretFile struct{ key, path string }

// secretFiles lists the configured files holding secrets: passwords and
// private keys (certificates and the allowlist public key are public).
func secretFiles(cfg config.Config) []secretFile {
	var out []secretFile
	for _, f := range []secretFile{
		{"mqtt.password_file", cfg.MQTT.PasswordFile},
		{"mqtt.key_file", cfg.MQTT.KeyFile},
		{"status.password_file", cfg.Status.PasswordFile},
		{"status.tls_key", cfg.Status.TLSKey},
	} {
		if f.path != "" {
			out = append(out, f)
		}
	}
	return out
}

// secretErrors checks every secret file of cfg (secretfile.Check) and
// returns one config error per file that must not be used. A file that
// does not exist yet is not reported here (provision writes configs
// before the secrets are installed): whoever reads it fails with the path,
// and the doctor lists it.
func secretErrors(file string, cfg config.Config) config.Errors {
	var errs config.Errors
	for _, f := range secretFiles(cfg) {
		if err := secretfile.Check(f.key, f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			msg := err.Error()
			var se *secretfile.Error
			if errors.As(err, &se) {
				msg = fmt.Sprintf("%s: %s; fix: %s", se.Path, se.Why, se.Fix)
			}
			errs = append(errs, &config.Error{File: file, Key: f.key, Msg: msg})
		}
	}
	return errs
}

// checkSecrets is secretErrors for `dockd run`: the station does not start
// on a secret others can read.
func checkSecrets(cfg config.Config) error {
	if errs := secretErrors("config", cfg); len(errs) > 0 {
		return fmt.Errorf("refusing to start: %w", errs)
	}
	return nil
}

// allowlistOptions are the allowlist store's options from the config:
// trace retention, central's key (or the refusal of unsigned lists), and
// the limits on updates. The staging reserve is the event buffer's unused
// budget plus allowlist.disk_reserve, read when a part is staged.
func (d *daemon) allowlistOptions() []allowlist.Option {
	a := d.cfg.Allowlist
	opts := []allowlist.Option{allowlist.WithTraceRetention(a.TraceRetention)}
	switch {
	case a.PublicKey != "":
		key, _ := base64.StdEncoding.DecodeString(a.PublicKey) // validated by config.Parse
		opts = append(opts, allowlist.WithPublicKey(ed25519.PublicKey(key)))
	case !a.AllowUnsigned:
		opts = append(opts, allowlist.WithRequireSignature())
	}
	return append(opts, allowlist.WithLimits(allowlist.Limits{
		MaxChunkBytes: int64(a.MaxChunkBytes), MaxDeltaBytes: int64(a.MaxDeltaBytes), MaxSnapshotBytes: int64(a.MaxSnapshotBytes),
		StagingTTL: a.StagingTTL,
		Reserve: func() int64 {
			room := int64(d.cfg.Buffer.MaxBytes)
			if d.queue != nil {
				room -= d.queue.Stats().Bytes
			}
			return max(room, 0) + int64(a.DiskReserve)
		},
	}))
}

// commandConfig is the command handler's config for this station.
func (d *daemon) commandConfig(c command.Config) command.Config {
	c.MaxPayload = int(d.cfg.MQTT.Limits.CommandBytes)
	c.ClockSynced = clockSynced
	if d.opts.ClockSynced != nil {
		c.ClockSynced = d.opts.ClockSynced
	}
	return c
}

// ReceiveMessage is the uplink handler for the command filter: like
// Receive, but it keeps the retained flag and never copies more than the
// command size limit (an oversized payload is handed on as its size only,
// to be answered too_large). Safe for concurrent use.
func (s *commandService) ReceiveMessage(m uplink.Inbound) {
	msg := commandMsg{topic: m.Topic, retained: m.Retained}
	if len(m.Payload) > s.maxPayload {
		msg.size = len(m.Payload)
	} else {
		msg.payload = append([]byte(nil), m.Payload...)
	}
	select {
	case s.in <- msg:
	default:
		s.log.Warn("command queue full; dropping a command (central will resend it)", "topic", m.Topic)
	}
}

// handle answers one queued message.
func (s *commandService) handle(ctx context.Context, m commandMsg) (string, []byte) {
	return s.h.HandleMessage(ctx, command.Message{Topic: m.topic, Payload: m.payload, Retained: m.retained, Size: m.size})
}

// checkSecrets adds a doctor row per configured secret file.
func (d *doctor) checkSecrets(cfg config.Config) {
	for _, f := range secretFiles(cfg) {
		err := secretfile.Check(f.key, f.path)
		var se *secretfile.Error
		switch {
		case err == nil:
			d.add("secret "+f.key, levelPass, f.path+": private to the service", "")
		case errors.As(err, &se):
			d.add("secret "+f.key, levelFail, se.Path+": "+se.Why+"; dockd refuses to use it", se.Fix)
		default:
			d.add("secret "+f.key, levelFail, oneLine(err.Error()), "create it for the service user only: install -m 0600 -o "+secretfile.ServiceUser+" /dev/stdin "+f.path)
		}
	}
}

// withoutSecretErrors drops the secret-file errors from a checkDevices
// result (the doctor reports them as rows of their own).
func withoutSecretErrors(err error) error {
	var errs config.Errors
	if !errors.As(err, &errs) {
		return err
	}
	secret := map[string]bool{"mqtt.password_file": true, "mqtt.key_file": true, "status.password_file": true, "status.tls_key": true}
	var keep config.Errors
	for _, e := range errs {
		if !secret[e.Key] {
			keep = append(keep, e)
		}
	}
	if len(keep) == 0 {
		return nil
	}
	return keep
}

// checkSigning warns when central's allowlist updates are accepted
// unsigned.
func (d *doctor) checkSigning() {
	a := d.cfg.Allowlist
	switch {
	case d.cfg.MQTT.Broker == "":
	case a.PublicKey != "":
		d.add("allowlist signing", levelPass, "updates from central must be signed with allowlist.public_key", "")
	case a.AllowUnsigned:
		d.add("allowlist signing", levelWarn, "allowlist.allow_unsigned is true: anyone who can publish on the site's allowlist topics decides what this door accepts",
			"set allowlist.public_key to central's Ed25519 public key and remove allow_unsigned")
	}
}

// replyOfflineWait is how long a reply waits for the connection to come
// fully up: commands (retained ones above all) arrive while the uplink is
// still subscribing, before it takes publishes.
const replyOfflineWait = 15 * time.Second

// publishReply publishes a command reply, waiting up to replyOfflineWait
// while the uplink is not (yet) connected instead of losing the reply.
func (s *commandService) publishReply(ctx context.Context, topic string, reply []byte) error {
	deadline := time.Now().Add(replyOfflineWait)
	for {
		err := s.pub.Publish(ctx, topic, reply)
		if !errors.Is(err, uplink.ErrOffline) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
