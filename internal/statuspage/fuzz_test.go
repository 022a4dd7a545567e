package statuspage

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAPIHandlers drives the whole TCP handler and the control socket's
// handler with arbitrary requests from a client that holds no credential:
// nothing may panic, and no request may change anything (the source counts
// every state change it is asked for) or get a 2xx on a POST.
func FuzzAPIHandlers(f *testing.F) {
	seeds := []struct {
		method, path, host, origin, ctype, csrf, cookie, auth, body string
	}{
		{"POST", "/api/direction", "127.0.0.1:8080", "", "application/json", "", "", "", `{"direction":"shipping"}`},
		{"POST", "/api/simulate", "attacker.example:8080", "http://attacker.example:8080", "application/json", "", "", "", `{"data":"x","reader":"scanner-1"}`},
		{"POST", "/api/light-test", "localhost", "null", "application/json; charset=utf-8", "x", "dockd_session=abc", "", `{}`},
		{"POST", "/login", "[::1]:8080", "http://[::1]:8080", "application/x-www-form-urlencoded", "", "", "", "user=technician&password=x"},
		{"POST", "/logout", "127.0.0.1", "http://127.0.0.1", "application/json", "", "dockd_session=" + strings.Repeat("a", 64), "", ``},
		{"GET", "/login?token=abc", "127.0.0.1:1", "", "", "", "", "", ""},
		{"GET", "/api/events?x=1", "127.0.0.1", "http://127.0.0.1", "", "", "", "Basic dGVjaG5pY2lhbjp4", ""},
		{"POST", "/api/direction", "127.0.0.1", "", "application/json", "", "", "Basic dGVjaG5pY2lhbjp4", `{"direction":"receiving"}`},
		{"PUT", "/api/../api/direction", "127.0.0.1", "", "application/json", "", "", "", `{}`},
		{"POST", "/api/login-link", "127.0.0.1", "", "application/json", "", "", "", `{}`},
		{"POST", "/api/reload", "127.0.0.1:8080", "http://127.0.0.1:8080", "application/json", "", "", "", `{}`},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.host, s.origin, s.ctype, s.csrf, s.cookie, s.auth, s.body)
	}
	src := newFakeSource()
	srv, err := New(Config{PasswordSHA256: HashPassword(randomToken()), AllowedHosts: []string{"dock.example"}}, src, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	tcp, local := srv.handler(false), srv.handler(true)
	f.Fuzz(func(t *testing.T, method, path, host, origin, ctype, csrf, cookie, auth, body string) {
		if !validMethod(method) || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#") || strings.Contains(path, "/events") {
			return // not a request a server could receive (or a long-lived stream)
		}
		for _, h := range []http.Handler{tcp, local} {
			req := httptest.NewRequest("GET", "http://127.0.0.1:8080/", strings.NewReader(body))
			req.Method = method
			req.URL.Path, req.URL.RawQuery, _ = strings.Cut(path, "?")
			req.RequestURI = path
			req.Host = host
			req.RemoteAddr = "127.0.0.1:40000"
			for k, v := range map[string]string{"Origin": origin, "Content-Type": ctype, csrfHeader: csrf, "Cookie": cookie, "Authorization": auth} {
				if v != "" && validHeader(v) {
					req.Header.Set(k, v)
				}
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if method == "POST" && rec.Code/100 == 2 {
				t.Fatalf("%s %s (host %q origin %q) answered %d without credentials: %s", method, path, host, origin, rec.Code, rec.Body)
			}
			if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Fatalf("%s %s: no security headers", method, path)
			}
		}
		if n := src.changes(); n != 0 {
			t.Fatalf("%d state change(s) without credentials after %s %s", n, method, path)
		}
	})
}

func validMethod(m string) bool {
	switch m {
	case "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH":
		return true
	}
	return false
}

func validHeader(v string) bool {
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
