package main

// A minimal Chrome DevTools Protocol client over --remote-debugging-pipe
// (fd 3: commands to Chromium, fd 4: its answers, each message ended by
// NUL), enough to drive the status page like a technician: open a URL,
// evaluate script, click buttons.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

type cdpMsg struct {
	ID     int             `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// cdpBrowser is one headless Chromium driven over its pipe, attached to one
// page.
type cdpBrowser struct {
	t       *testing.T
	cmd     *exec.Cmd
	w       *os.File
	mu      sync.Mutex
	next    int
	pending map[int]chan cdpMsg
	session string
}

func startCDP(t *testing.T, bin string) *cdpBrowser {
	t.Helper()
	toChrome, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fromChrome, chromeW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--remote-debugging-pipe", "--user-data-dir="+t.TempDir(), "about:blank")
	cmd.ExtraFiles = []*os.File{toChrome, chromeW}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	toChrome.Close()
	chromeW.Close()
	b := &cdpBrowser{t: t, cmd: cmd, w: cmdW, pending: map[int]chan cdpMsg{}}
	go func() {
		br := bufio.NewReaderSize(fromChrome, 1<<20)
		for {
			raw, err := br.ReadBytes(0)
			if err != nil {
				return
			}
			var m cdpMsg
			if json.Unmarshal(raw[:len(raw)-1], &m) != nil || m.ID == 0 {
				continue // an event
			}
			b.mu.Lock()
			ch := b.pending[m.ID]
			delete(b.pending, m.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		}
	}()
	t.Cleanup(func() { cmdW.Close(); cancel(); cmd.Wait(); fromChrome.Close() })
	var target struct {
		TargetID string `json:"targetId"`
	}
	b.must("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var att struct {
		SessionID string `json:"sessionId"`
	}
	b.must("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att)
	b.session = att.SessionID
	return b
}

func (b *cdpBrowser) call(session, method string, params any, out any) error {
	b.mu.Lock()
	b.next++
	id := b.next
	ch := make(chan cdpMsg, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	raw, _ := json.Marshal(msg)
	if _, err := b.w.Write(append(raw, 0)); err != nil {
		return fmt.Errorf("CDP %s: %w", method, err)
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return fmt.Errorf("CDP %s: %s", method, m.Error.Message)
		}
		if out != nil {
			return json.Unmarshal(m.Result, out)
		}
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("CDP %s: no answer within 30 s", method)
	}
}

func (b *cdpBrowser) must(session, method string, params any, out any) {
	b.t.Helper()
	if err := b.call(session, method, params, out); err != nil {
		b.t.Fatal(err)
	}
}

// eval runs expr in the page (awaiting a promise) and decodes its value.
func (b *cdpBrowser) eval(expr string, out any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := b.call(b.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r); err != nil {
		return err
	}
	if r.Exception != nil {
		return errors.New("script exception: " + r.Exception.Text)
	}
	if out == nil || len(r.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(r.Result.Value, out)
}

// navigate opens url and waits until the page at path has loaded.
func (b *cdpBrowser) navigate(url, path string) {
	b.t.Helper()
	b.must(b.session, "Page.navigate", map[string]any{"url": url}, nil)
	waitUntil(b.t, 20*time.Second, "the page "+path+" to load", func() bool {
		var s string
		b.eval(`location.pathname + "|" + document.readyState`, &s)
		return s == path+"|complete"
	})
}
