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
	// Now is the clock for reply times (default time.Now).
	Now func() time.Time
	Log *slog.Logger // nil: slog.Default
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
// else). Every message on a command topic gets exactly one reply, whatever
// the payload, including an Executor that panics; a repeated id gets the
// first reply again, byte for byte, without running the command (within
// the last CacheSize ids). Handle blocks while the command runs (at most
// about Config.Timeout, or until ctx ends).
func (h *Handler) Handle(ctx context.Context, topic string, payload []byte) (replyTopic string, reply []byte) {
	name, ok := h.cfg.Topics.CommandName(topic)
	if !ok {
		h.log.Warn("ignoring a message that is not on this station's command topic", "topic", topic, "want", h.cfg.Topics.CommandFilter())
		return "", nil
	}
	cmd, perr := Parse(name, payload)
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
	if perr != nil {
		h.log.Warn("refused command", "id", cmd.ID, "command", name, "err", perr)
		r = Reply{ID: cmd.ID, Command: name, Error: toReplyError(perr)}
	} else {
		r = h.run(ctx, cmd)
	}
	e.reply = h.encode(r)
	close(e.done)
	return replyTopic, e.reply
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
