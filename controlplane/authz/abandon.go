package authz

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"

	"github.com/jitgate/jitgate/filter/authorize"
)

// ErrAbandoned is the cause of a decision stopped because the filter reported that the
// agent's request ended while the decision was pending (authorize.AbandonPath).
var ErrAbandoned = errors.New("the agent's request ended before the decision (abandoned by the filter)")

// pendingCalls are the decisions in progress by request id, so the filter can stop the
// one whose agent's request ended. Envoy keeps a Wasm filter's pending callout running
// after its stream is gone, so the control plane cannot learn it from its own request:
// the filter sends the pending call's document again to authorize.AbandonPath.
type pendingCalls struct {
	mu    sync.Mutex
	calls map[string][]*pendingCall
}

type pendingCall struct {
	// token is the sha256 of the agent's token: only a document with the same token (the
	// same filter stream, in practice) abandons the call, never someone who merely knows
	// or chose its request id.
	token  [sha256.Size]byte
	cancel context.CancelCauseFunc
}

// track registers the decision of req until release is called; its context ends when the
// request's does or when the call is abandoned.
func (p *pendingCalls) track(parent context.Context, req authorize.Request) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	if req.RequestID == "" {
		return ctx, func() { cancel(nil) }
	}
	pc := &pendingCall{token: sha256.Sum256([]byte(req.Token)), cancel: cancel}
	p.mu.Lock()
	if p.calls == nil {
		p.calls = map[string][]*pendingCall{}
	}
	p.calls[req.RequestID] = append(p.calls[req.RequestID], pc)
	p.mu.Unlock()
	return ctx, func() {
		p.mu.Lock()
		list := p.calls[req.RequestID]
		for i, x := range list {
			if x == pc {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(p.calls, req.RequestID)
		} else {
			p.calls[req.RequestID] = list
		}
		p.mu.Unlock()
		cancel(nil)
	}
}

// abandon stops the pending decisions of req's request id made with req's token.
func (p *pendingCalls) abandon(req authorize.Request) int {
	sum := sha256.Sum256([]byte(req.Token))
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, pc := range p.calls[req.RequestID] {
		if subtle.ConstantTimeCompare(pc.token[:], sum[:]) == 1 {
			pc.cancel(ErrAbandoned)
			n++
		}
	}
	return n
}

// serveAbandon answers authorize.AbandonPath: the body is the pending call's authorize
// document. The decision it names ends as cancelled (recorded, with nothing consumed);
// the answer is 200 with the number of decisions stopped, whatever it found.
func (s *Service) serveAbandon(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "", "use POST")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, authorize.MaxDocumentBytes))
	var req authorize.Request
	if err == nil {
		req, err = authorize.ParseRequest(body)
	}
	if err != nil || req.RequestID == "" {
		writeError(w, http.StatusBadRequest, "", "an abandon names the pending call with its authorize document")
		return
	}
	n := s.pending.abandon(req)
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "authorize call abandoned by the filter: the agent's request ended",
		slog.String("request_id", req.RequestID), slog.Int("stopped", n), slog.String("api", req.Call.API),
		slog.String("peer", r.RemoteAddr))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(`{"stopped":` + strconv.Itoa(n) + "}\n"))
}
