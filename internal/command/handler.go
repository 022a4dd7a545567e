package command

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dockd/dockd/uplink/contract"
)

// Defaults applied by NewHandler to zero Config fields.
const (
	DefaultCacheSize = 256
	DefaultTimeout   = 60 * time.Second
)

// Config configures a Handler.
type Config struct {
	// Topics names this station's topics; only PREFIX/SITE/DOOR/cmd/NAME of
	// exactly this station is accepted.
	Topics contract.Topics
	// Station is the station id put in every reply.
	Station string
	Exec    Executor
	// CacheSize is how many recent command ids (with their replies) are
	// remembered for idempotency (default DefaultCacheSize).
	CacheSize int
	// Timeout bounds one command's execution (default DefaultTimeout).
	Timeout time.Duration
	// Now is the clock for reply times and expiry (default time.Now).
	Now func() time.Time
	// ClockSynced says whether Now can be trusted to judge a command's age
	// (a Pi without RTC boots at a stale time until NTP corrects it); nil
	// means always. While it returns false no command is refused as
	// expired (the check is logged as skipped).
	ClockSynced func() bool
	// MaxPayload bounds one command message (default DefaultMaxPayload, at
	// most MaxPayload); larger ones are answered too_large without being
	// parsed.
	MaxPayload int
	// Skew is how much later than issued_at+ttl_s a command is still run,
	// for clocks that differ a little (default DefaultSkew).
	Skew time.Duration
	Log  *slog.Logger // nil: slog.Default
}

// DefaultSkew is the default Config.Skew.
const DefaultSkew = 30 * time.Second

// Message is one message from a command topic as the MQTT client saw it.
type Message struct {
	Topic   string
	Payload []byte
	// Retained is set when the broker delivered a retained copy (on
	// subscribing), not a live publish.
	Retained bool
	// Size is the payload's real size when the caller did not keep a
	// payload over Config.MaxPayload (Payload nil); 0 means len(Payload).
	Size int
}

// Reply is the JSON answer to one command (command-reply.schema.json).
type Reply struct {
	Schema  string      `json:"schema"`
	ID      string      `json:"id"`
	Command string      `json:"command"`
	Station string      `json:"station"`
	OK      bool        `json:"ok"`
	Time    time.Time   `json:"time"`
	Result  any         `json:"result,omitempty"`
	Error   *ReplyError `json:"error,omitempty"`
}

// ReplyError says why a command failed.
type ReplyError struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Handler turns command messages into replies, running each command id at
// most once. It is safe for concurrent use: a message whose id is being
// executed by another goroutine waits for that execution and returns its
// reply.
type Handler struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	order *list.List               // of *entry, most recent first
	byID  map[string]*list.Element // id → element of order
}

type entry struct {
	id, name string
	done     chan struct{} // closed when reply is set
	reply    []byte
}

// NewHandler returns a Handler for cfg, applying defaults.
func NewHandler(cfg Config) *Handler {
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = DefaultMaxPayload
	}
	cfg.MaxPayload = min(cfg.MaxPayload, MaxPayload)
	if cfg.Skew <= 0 {
		cfg.Skew = DefaultSkew
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	return &Handler{cfg: cfg, log: log.With("part", "command"), order: list.New(), byID: map[string]*list.Element{}}
}

// Handle answers the command message (topic, payload). It returns the
// topic and payload of the reply to publish (QoS 1, not retained), or an
// empty replyTopic when the topic is not one of this station's command
// topics (such messages are logged and dropped: they are for someone
// else). Every non-empty message on a command topic gets exactly one reply, whatever
// the payload, including an Executor that panics; a repeated id gets the
// first reply again, byte for byte, without running the command (within
// the last CacheSize ids). Handle blocks while the command runs (at most
// about Config.Timeout, or until ctx ends).
func (h *Handler) Handle(ctx context.Context, topic string, payload []byte) (replyTopic string, reply []byte) {
	return h.HandleMessage(ctx, Message{Topic: topic, Payload: payload})
}

// HandleMessage is Handle for a message with its MQTT flags. Before
// anything is parsed, a payload over Config.MaxPayload is answered
// too_large on the _invalid reply topic (its id is not read). A retained
// message is never executed: commands are not state, and a retained one
// would run again after every reconnect or restart; it is answered
// retained (on its id's reply topic when the id is readable) and not
// remembered, so a live copy of the same id still runs. A command whose
// issued_at + ttl_s has passed is answered expired (and remembered like
// any reply). An empty payload (central clearing a retained command) is
// logged and not answered. Each refusal is one log line saying why.
func (h *Handler) HandleMessage(ctx context.Context, m Message) (replyTopic string, reply []byte) {
	topic, payload := m.Topic, m.Payload
	name, ok := h.cfg.Topics.CommandName(topic)
	if !ok {
		h.log.Warn("ignoring a message that is not on this station's command topic", "topic", topic, "want", h.cfg.Topics.CommandFilter())
		return "", nil
	}
	if len(payload) == 0 && m.Size == 0 {
		// The MQTT idiom for clearing a retained message: the broker passes
		// the empty publish on to live subscribers. Not a command.
		h.log.Info("empty message on a command topic ignored (a retained command being cleared)", "command", name, "retained", m.Retained)
		return "", nil
	}
	if size := max(m.Size, len(payload)); size > h.cfg.MaxPayload {
		h.log.Warn("command refused unread: too large", "command", name, "bytes", size, "limit", h.cfg.MaxPayload, "retained", m.Retained)
		return h.cfg.Topics.Reply(contract.InvalidReplyID), h.encode(Reply{Command: name, Error: &ReplyError{
			Code: CodeTooLarge, Message: fmt.Sprintf("command of %d bytes exceeds this station's limit of %d (mqtt.limits.command_bytes)", size, h.cfg.MaxPayload)}})
	}
	cmd, perr := Parse(name, payload)
	if m.Retained {
		rt := h.cfg.Topics.Reply(contract.InvalidReplyID)
		if cmd.ID != "" {
			rt = h.cfg.Topics.Reply(cmd.ID)
		}
		h.log.Warn("retained command ignored: commands must be published with retain off; clear it on the broker (publish an empty retained message on the topic)",
			"command", name, "id", cmd.ID, "topic", topic)
		return rt, h.encode(Reply{ID: cmd.ID, Command: name, Error: &ReplyError{
			Code: CodeRetained, Message: "delivered as a retained message; not executed (publish commands with retain off, and clear the retained copy on " + topic + ")"}})
	}
	if cmd.ID == "" {
		// No usable id: nothing to remember it by.
		h.log.Warn("unreadable command", "command", name, "err", perr)
		return h.cfg.Topics.Reply(contract.InvalidReplyID), h.encode(Reply{Command: name, Error: toReplyError(perr)})
	}
	replyTopic = h.cfg.Topics.Reply(cmd.ID)

	e, owner, dup := h.claim(cmd.ID, name)
	if dup != nil {
		h.log.Warn("command id reused for another command", "id", cmd.ID, "command", name, "first", dup.name)
		return replyTopic, h.encode(Reply{ID: cmd.ID, Command: name, Error: &ReplyError{
			Code: CodeDuplicateID, Message: fmt.Sprintf("id %q was used for %s; use a new id", cmd.ID, dup.name)}})
	}
	if !owner {
		select {
		case <-e.done:
			h.log.Info("repeated command id answered from the cache", "id", cmd.ID, "command", name)
			return replyTopic, e.reply
		case <-ctx.Done():
			return replyTopic, h.encode(Reply{ID: cmd.ID, Command: name, Error: &ReplyError{
				Code: CodeTimeout, Message: "station shutting down while the first copy of this command ran"}})
		}
	}

	var r Reply
	switch {
	case perr != nil:
		h.log.Warn("refused command", "id", cmd.ID, "command", name, "err", perr)
		r = Reply{ID: cmd.ID, Command: name, Error: toReplyError(perr)}
	case h.expired(cmd):
		now := h.cfg.Now()
		h.log.Warn("command refused: arrived after its time to live", "id", cmd.ID, "command", name,
			"issued_at", cmd.IssuedAt, "ttl", cmd.TTL, "age", now.Sub(cmd.IssuedAt).Round(time.Second))
		r = Reply{ID: cmd.ID, Command: name, Error: &ReplyError{Code: CodeExpired, Message: fmt.Sprintf(
			"issued at %s with ttl_s %d; the station's clock says %s: too late to run it, issue it again with a new id",
			cmd.IssuedAt.UTC().Format(time.RFC3339), int64(cmd.TTL/time.Second), now.UTC().Format(time.RFC3339))}}
	default:
		r = h.run(ctx, cmd)
	}
	e.reply = h.encode(r)
	close(e.done)
	return replyTopic, e.reply
}

// expired reports whether cmd is past its time to live by a clock that can
// be trusted.
func (h *Handler) expired(cmd Command) bool {
	if !cmd.Expired(h.cfg.Now(), h.cfg.Skew) {
		return false
	}
	if h.cfg.ClockSynced != nil && !h.cfg.ClockSynced() {
		h.log.Warn("command looks expired but the clock is not synchronised; running it", "id", cmd.ID, "command", cmd.Name, "issued_at", cmd.IssuedAt)
		return false
	}
	return true
}

// claim finds or creates the cache entry for id. owner is true when the
// caller created it and must run the command; dup is the existing entry
// when id was used for a different command name.
func (h *Handler) claim(id, name string) (e *entry, owner bool, dup *entry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if el, ok := h.byID[id]; ok {
		e := el.Value.(*entry)
		if e.name != name {
			return nil, false, e
		}
		h.order.MoveToFront(el)
		return e, false, nil
	}
	e = &entry{id: id, name: name, done: make(chan struct{})}
	h.byID[id] = h.order.PushFront(e)
	for h.order.Len() > h.cfg.CacheSize {
		last := h.order.Back()
		le := last.Value.(*entry)
		select {
		case <-le.done:
		default:
			// Still running: keep it; evict nothing more this time.
			return e, true, nil
		}
		h.order.Remove(last)
		delete(h.byID, le.id)
	}
	return e, true, nil
}

// MaxPayload is the largest command message this Handler reads.
func (h *Handler) MaxPayload() int { return h.cfg.MaxPayload }

// Cached reports how many command ids are remembered now.
func (h *Handler) Cached() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.order.Len()
}

func (h *Handler) run(ctx context.Context, cmd Command) (r Reply) {
	r = Reply{ID: cmd.ID, Command: cmd.Name}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	start := h.cfg.Now()
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("command panicked", "id", cmd.ID, "command", cmd.Name, "panic", p)
			r.Result, r.Error = nil, &ReplyError{Code: CodeFailed, Message: fmt.Sprintf("internal error: %v", p)}
		}
		r.OK = r.Error == nil
		h.log.Info("command done", "id", cmd.ID, "command", cmd.Name, "ok", r.OK, "took", h.cfg.Now().Sub(start))
	}()
	x := h.cfg.Exec
	if x == nil {
		r.Error = &ReplyError{Code: CodeUnsupported, Message: "no executor configured"}
		return r
	}
	var err error
	switch cmd.Name {
	case NameSetDirection:
		if err = x.SetDirection(cmd.direction); err == nil {
			r.Result = map[string]any{"direction": cmd.direction}
		}
	case NameLightTest:
		err = x.LightTest(ctx)
	case NameReloadConfig:
		err = x.ReloadConfig()
	case NameRequestStatus:
		r.Result = x.Status()
	case NameOpenShipment, NameCloseShipment:
		open := cmd.Name == NameOpenShipment
		if err = x.Shipment(open, cmd.shipment); err == nil {
			r.Result = map[string]any{"shipment": cmd.shipment.ID, "open": open}
		}
	}
	if err != nil {
		r.Result = nil
		r.Error = toReplyError(err)
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			r.Error.Code = CodeTimeout
		}
	}
	return r
}

func toReplyError(err error) *ReplyError {
	var ce *Error
	switch {
	case errors.As(err, &ce):
		return &ReplyError{Code: ce.Code, Message: ce.Msg}
	case errors.Is(err, ErrUnsupported):
		return &ReplyError{Code: CodeUnsupported, Message: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return &ReplyError{Code: CodeTimeout, Message: err.Error()}
	default:
		return &ReplyError{Code: CodeFailed, Message: err.Error()}
	}
}

// encode fills the common reply fields and marshals r. A result that
// cannot be marshalled turns into a failed reply.
func (h *Handler) encode(r Reply) []byte {
	r.Schema, r.Station, r.Time = ReplySchema, h.cfg.Station, h.cfg.Now().UTC()
	r.OK = r.Error == nil
	b, err := json.Marshal(r)
	if err != nil {
		r.Result, r.OK = nil, false
		r.Error = &ReplyError{Code: CodeFailed, Message: fmt.Sprintf("encoding the result: %v", err)}
		b, _ = json.Marshal(r) // only strings, bools and a time remain
	}
	return b
}
